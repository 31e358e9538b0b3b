"""The batch loader: deterministic per-epoch shuffling, augmentation, normalisation to
C-contiguous float32 (B, 3, S, S), background prefetch (the C work releases the GIL), and a
policy for unreadable samples."""
import queue
import threading

import numpy as np

from .. import _C
from .augment import augment

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_images(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (B, S, S, 3) -> float32 (B, 3, S, S): (x / 255 - mean) / std per channel, in C
    (another dtype is a TypeError)."""
    return _C.normalize(np.ascontiguousarray(images), np.asarray(mean, np.float32),
                        np.asarray(std, np.float32))


class Loader:
    """Iterate one epoch per ``for batch in loader`` (then ``set_epoch``), or ``epochs(n)``.

    Each batch: ``images`` float32 (B, 3, S, S), ``indices`` int64 (B,), and ``landmarks`` /
    ``parsing`` when the data set has them. ``augment``: an AugmentConfig or None.
    ``on_error``: ``"raise"`` (a ValueError naming the sample's file) or ``"skip"`` (the
    sample is left out and recorded in ``skipped``; batches stay full). ``part=(rank, size)``:
    this process loads only its rank's slice of every (global) batch of ``batch_size`` (data
    parallel: the global batches and their order do not depend on ``size``)."""

    def __init__(self, dataset, batch_size, seed=0, shuffle=True, drop_last=True, augment=None,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, prefetch=2, on_error="raise", epoch=0, part=(0, 1)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        rank, size = (int(v) for v in part)
        if not 0 <= rank < size or batch_size % size:
            raise ValueError(f"part={part}: need 0 <= rank < size and a batch size ({batch_size}) divisible by size")
        if size > 1 and (on_error != "raise" or not drop_last):
            raise ValueError("a loader split across ranks needs on_error='raise' and drop_last=True (equal batches)")
        self.part, self.local_batch = (rank, size), batch_size // size
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed, self.shuffle, self.drop_last = int(seed), bool(shuffle), bool(drop_last)
        self.augment = augment
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.prefetch = max(0, int(prefetch))
        self.on_error = on_error
        self.epoch = int(epoch)
        self.skipped = []

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def order(self, epoch=None):
        """The sample order of an epoch: a pure function of (seed, epoch)."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        if hasattr(self.dataset, "epoch_order"):  # a streamed data set shuffles through a buffer
            return self.dataset.epoch_order(self.seed, self.epoch if epoch is None else epoch)
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch]).permutation(n)

    def _load(self, i):
        try:
            return self.dataset[int(i)]
        except (ValueError, OSError) as exc:
            if self.on_error == "raise":
                raise ValueError(f"sample {int(i)}: {exc}") from exc
            self.skipped.append((int(i), str(exc)))
            return None

    def _local_order(self, epoch):
        """The epoch's order restricted to this rank's slices of the global batches."""
        order = self.order(epoch)
        rank, size = self.part
        if size == 1:
            return order
        B, b = self.batch_size, self.local_batch
        return order[:len(order) - len(order) % B].reshape(-1, B)[:, rank * b:(rank + 1) * b].ravel()

    def _samples(self, epoch, start):
        """(index, sample or None when skipped) of the epoch from position start on."""
        order = self._local_order(epoch)
        if not hasattr(self.dataset, "stream"):
            for i in order[start:]:
                yield i, self._load(i)
            return
        for i, s in self.dataset.stream(order, start):
            if isinstance(s, Exception):
                if self.on_error == "raise":
                    raise ValueError(f"sample {int(i)}: {s}") from s
                self.skipped.append((int(i), str(s)))
                s = None
            yield i, s

    def _batches(self, epoch, start=0):
        if hasattr(self.dataset, "render_batch"):  # a generator renders whole batches (SynthFace)
            yield from self._rendered_batches(epoch, start)
            return
        samples, indices = [], []
        for i, s in self._samples(epoch, start * self.local_batch):
            if s is None:
                continue
            samples.append(s)
            indices.append(i)
            if len(samples) == self.local_batch:
                yield self._collate(samples, indices, epoch)
                samples, indices = [], []
        if samples and not self.drop_last:
            yield self._collate(samples, indices, epoch)

    def _rendered_batches(self, epoch, start=0):
        order, b = self._local_order(epoch), self.local_batch
        stop = len(order) - len(order) % b if self.drop_last else len(order)
        for k in range(start * b, stop, b):
            indices = order[k:k + b]
            r = self.dataset.render_batch(indices)
            yield self._collate(None, indices, epoch, r["image"], r.get("landmarks"), r.get("parsing"))

    def _collate(self, samples, indices, epoch, images=None, lm=None, parsing=None):
        if samples is not None:
            images = np.stack([s["image"] for s in samples])
            lm = np.stack([s["landmarks"] for s in samples]) if "landmarks" in samples[0] else None
            parsing = np.stack([s["parsing"] for s in samples]) if "parsing" in samples[0] else None
        if self.augment is not None:
            out = augment(images, indices, self.seed, epoch, landmarks=lm, parsing=parsing, config=self.augment)
            images, lm, parsing = out["images"], out.get("landmarks"), out.get("parsing")
        batch = {"images": normalize_images(images, self.mean, self.std),
                 "indices": np.asarray(indices, np.int64)}
        if lm is not None:
            batch["landmarks"] = np.ascontiguousarray(lm, np.float32)
        if parsing is not None:
            batch["parsing"] = np.ascontiguousarray(parsing, np.uint8)
        return batch

    def __iter__(self):
        return self.iterate()

    def iterate(self, epoch=None, start=0):
        """The batches of one epoch (default the current one) from batch number ``start``
        on: resuming mid-epoch gives the batches an uninterrupted epoch would have given
        (exactly so unless samples were skipped as unreadable before ``start``)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.prefetch == 0:
            yield from self._batches(epoch, start)
            return
        q = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item):
            """Queue an item unless the consumer has gone; False when it has."""
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce():
            try:
                for b in self._batches(epoch, start):
                    if not put(("batch", b)):
                        return
                put(("end", None))
            except BaseException as exc:  # handed to the consumer, never lost in the thread
                put(("error", exc))

        worker = threading.Thread(target=produce, name="pacofr-loader", daemon=True)
        worker.start()
        try:
            while True:
                kind, item = q.get()
                if kind == "batch":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    return
        finally:
            stop.set()
            worker.join(timeout=10)

    def epochs(self, n):
        """Batches of n epochs from the current one, advancing ``epoch``."""
        for _ in range(n):
            yield from self
            self.epoch += 1
