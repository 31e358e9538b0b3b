"""One optimizer step of pre-training (as MAE's ``engine_pretrain``): micro-batches through
``PacoFR.forward`` / ``backward``, the AdamW update and the EMA teacher, with the step counter
moved under the same Ctrl-C guard as the weights. Knows nothing of files or argparse."""
import signal
import threading
from dataclasses import dataclass

from ..optim import cosine_lr


@dataclass
class Position:
    """Where a run is: optimizer steps done, and the data position (epoch, batch within it)."""
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


class DeferInterrupt:
    """Hold Ctrl-C (SIGINT) during an optimizer update, so an interrupt never falls between
    the weights changing and the step counter moving; it is raised right after."""

    def __enter__(self):
        self.pending, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda *a: setattr(self, "pending", True))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending:
            raise KeyboardInterrupt
        return False


def batches(loader, pos):
    """Endless batches from ``pos``'s data position on, moving it along."""
    while True:
        for b in loader.iterate(pos.epoch, pos.batch_in_epoch):
            pos.batch_in_epoch += 1
            yield b
        pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0


def train_one_step(paco, optimizer, it, pos, cfg):
    """Step ``pos.step`` over ``cfg.accum_steps`` micro-batches from ``it``; then ``pos.step``
    moves on. -> (terms averaged over the micro-batches, images seen, the last batch,
    learning rate, gradient norm or None). An exception inside leaves the gradients partial:
    the caller rolls back to ``paco.snapshot()`` taken before. Data parallel (``paco.world``
    of several ranks, each with its slice of the batch): the gradients and the logged terms
    are averaged over the ranks before the update, which every rank then applies alike."""
    lr = cosine_lr(pos.step, cfg.base_lr(), cfg.steps, cfg.warmup(), cfg.min_lr)
    optimizer.lr = lr
    paco.model.zero_grad()
    sums, seen = {}, 0
    for micro in range(cfg.accum_steps):
        b = next(it)
        terms = paco.forward(b["images"], b["indices"], pos.step, micro, b.get("landmarks"), b.get("parsing"))
        terms.update(paco.backward())
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) / cfg.accum_steps
        seen += len(b["indices"])
    world = paco.world
    if world.size > 1:
        world.allreduce_mean_(paco.model.flat_grads)
        names = sorted(sums)
        means = world.allreduce_sum([sums[k] for k in names]) / world.size
        sums.update(zip(names, means.tolist()))
        seen *= world.size
    with DeferInterrupt():
        gnorm = optimizer.step(grad_scale=1.0 / cfg.accum_steps)
        paco.update_teacher()
        pos.step += 1
    return sums, seen, b, lr, gnorm
