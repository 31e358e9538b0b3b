"""What a pre-training run reports: metrics.jsonl (one JSON object per logged step),
TensorBoard events when tensorboardX is installed, and a tqdm progress bar."""
import json
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from .._io import atomic_write_bytes

BAR_KEYS = ("loss", "rec", "sc", "usage", "images_per_s")


class Metrics:
    """metrics.jsonl and TensorBoard events. Lines past ``resume_step`` (a run killed after
    logging them) are dropped, by an atomic rewrite: they will be written again. Each line is
    appended by one write() to a file opened O_APPEND, so a kill -9 leaves whole lines (and a
    torn last line, should the disk fill, is dropped on resume)."""

    def __init__(self, out, resume_step):
        self.path = Path(out) / "metrics.jsonl"
        if self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a killed run
            atomic_write_bytes(self.path, "".join(k + "\n" for k in keep).encode())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self.tb = None
        try:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(Path(out) / "tb"))
        except ImportError:
            pass

    def write(self, row):
        os.write(self.fd, (json.dumps(row) + "\n").encode())
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    def close(self):
        os.close(self.fd)
        if self.tb is not None:
            self.tb.close()


class NoMetrics:
    """What ranks other than 0 log in a data-parallel run: nothing (rank 0 writes the file)."""

    def write(self, row):
        pass

    def close(self):
        pass


class Throughput:
    """Images per second since the last logged step."""

    def __init__(self):
        self.t, self.images = time.perf_counter(), 0

    def add(self, images):
        self.images += images

    def rate(self):
        now = time.perf_counter()
        rate = self.images / max(now - self.t, 1e-9)
        self.t, self.images = now, 0
        return rate


def step_row(step, epoch, lr, terms, images_per_s, grad_norm):
    """One metrics.jsonl line from a step's averaged terms."""
    row = {"step": step, "epoch": epoch, "lr": lr, **{k: v for k, v in terms.items() if k != "incubating"},
           "incubating": bool(terms.get("incubating", 0)), "images_per_s": images_per_s}
    if grad_norm is not None:
        row["grad_norm"] = grad_norm
    return row


def progress_bar(enabled, total, initial, name):
    """A tqdm bar (None when disabled)."""
    if not enabled:
        return None
    return tqdm(total=total, initial=initial, desc=f"pretrain {name}", unit="step", dynamic_ncols=True)


def show(bar, row):
    if bar is not None:
        bar.set_postfix({k: f"{row[k]:.3g}" for k in BAR_KEYS if k in row})
