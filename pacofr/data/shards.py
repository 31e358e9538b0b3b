"""Pre-training sets as tar shards in the WebDataset layout: per face a ``NNNNNN.jpg`` (the
aligned crop) and a ``NNNNNN.json`` (where it came from), shards ``shard-NNNNNN.tar`` in one
folder with a ``manifest.json`` (shard names and face counts, crop size, how it was made).

``ShardSet`` streams such a folder without listing or loading it: an epoch visits the shards
in an order drawn from (seed, epoch) and shuffles faces through a buffer of ``buffer`` faces,
so memory holds at most that many encoded crops. The epoch's order is a pure function of
(seed, epoch, the shard counts, buffer), computed on indices alone: a run resumed mid-epoch
skips the shards already consumed without opening them and gives the batches an
uninterrupted epoch would have given."""
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes

MANIFEST = "manifest.json"
FORMAT = "pacofr-shards-1"


def shard_name(i):
    return f"shard-{int(i):06d}.tar"


def encode_jpeg(image, quality=95):
    """uint8 (S, S, 3) -> JPEG bytes (4:4:4 chroma: crops are small, colour edges matter)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=int(quality), subsampling=0)
    return buf.getvalue()


def write_shard(path, faces):
    """Write one shard atomically (built in memory, then a temporary file fsynced and renamed
    into place): ``faces`` an iterable of (jpeg bytes, metadata dict) -> how many faces it
    holds. An interrupted write leaves no shard at ``path``."""
    buf, n = io.BytesIO(), 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for jpg, meta in faces:
            key = f"{n:06d}"
            for suffix, data in ((".jpg", jpg), (".json", json.dumps(meta, sort_keys=True).encode())):
                info = tarfile.TarInfo(key + suffix)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
            n += 1
    atomic_write_bytes(path, buf.getvalue())
    return n


def write_manifest(root, shards, size, **info):
    """``root/manifest.json`` (atomic): ``shards`` a list of (file name, face count)."""
    doc = {"format": FORMAT, "size": int(size), "faces": int(sum(c for _, c in shards)),
           "shards": [{"name": name, "faces": int(c)} for name, c in shards], **info}
    atomic_write_bytes(Path(root) / MANIFEST, json.dumps(doc, indent=1).encode())


def write_shards(root, faces, size, shard_faces=1000, **info):
    """A whole shard folder from an iterable of (uint8 (S, S, 3) crop, metadata dict): shards
    of ``shard_faces`` faces, then the manifest -> number of faces written."""
    if int(shard_faces) < 1:
        raise ValueError(f"shard_faces must be >= 1, got {shard_faces}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shards, chunk = [], []

    def flush():
        name = shard_name(len(shards))
        shards.append((name, write_shard(root / name, chunk)))
        chunk.clear()
    for image, meta in faces:
        if np.asarray(image).shape != (size, size, 3):
            raise ValueError(f"face crops must be ({size}, {size}, 3), got {np.asarray(image).shape}")
        chunk.append((encode_jpeg(image), meta))
        if len(chunk) == shard_faces:
            flush()
    if chunk:
        flush()
    write_manifest(root, shards, size, **info)
    return sum(c for _, c in shards)


def is_shard_folder(path):
    return (Path(path) / MANIFEST).is_file()


def buffered_order(counts, seed, epoch, buffer):
    """The epoch's face order (global indices, shard s holding offsets[s] ..): shards in an
    order drawn from (seed, epoch), read in turn through a shuffle buffer of ``buffer``
    faces (a full buffer emits a random slot and refills it; the rest leaves shuffled at
    the end) -> (order int64 (N,), shard order int64 (S,))."""
    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rng = np.random.default_rng([int(seed), int(epoch), 0x5AD])
    shards = rng.permutation(len(counts))
    stream = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in shards] or [np.zeros(0, np.int64)])
    buffer = max(1, min(int(buffer), len(stream)))
    slots = rng.integers(0, buffer, size=max(0, len(stream) - buffer))
    # Step k emits slot slots[k] and refills it with stream[buffer + k]. What a slot holds at
    # step k is what the last earlier step that chose it put there (or its first face): found
    # for every step at once by grouping the steps by slot (vectorised; no loop over faces).
    steps = np.lexsort((np.arange(len(slots)), slots))          # by slot, then by step
    prev = np.full(len(slots), -1, np.int64)
    same = slots[steps[1:]] == slots[steps[:-1]]
    prev[steps[1:][same]] = steps[:-1][same]
    out = np.empty(len(stream), np.int64)
    out[:len(slots)] = np.where(prev >= 0, stream[buffer + np.maximum(prev, 0)], stream[slots])
    buf = stream[:buffer].copy()
    last = np.ones(len(slots), bool)
    last[steps[:-1][same]] = False                               # the last step of each slot refills it for good
    buf[slots[last]] = stream[buffer + np.flatnonzero(last)]
    rng.shuffle(buf)
    out[len(slots):] = buf
    return out, shards


class ShardSet:
    """A shard folder (``manifest.json`` beside the tars) as a streaming data set of aligned
    crops, each ``{"image": uint8 (S, S, 3)}`` resized (central square, bilinear) to ``size``
    when the shards hold another size. ``Loader`` drives it through ``epoch_order`` and
    ``stream``; ``buffer``: faces in the shuffle buffer."""

    def __init__(self, root, size=None, buffer=4096):
        self.root = Path(root)
        try:
            doc = json.loads((self.root / MANIFEST).read_text())
            self.names = [s["name"] for s in doc["shards"]]
            self.counts = np.array([int(s["faces"]) for s in doc["shards"]], np.int64)
            self.stored_size = int(doc["size"])
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.root}: no {MANIFEST} (write shards with `pacofr prepare` or "
                                    f"`pacofr synthface --shards`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.root / MANIFEST}: not a pacofr shard manifest ({exc!r})") from None
        if any(os.sep in n or n.startswith(".") or not n.endswith(".tar") for n in self.names):
            raise ValueError(f"{self.root / MANIFEST}: shard names must be plain .tar file names in its folder")
        if (self.counts < 0).any() or self.counts.sum() == 0:
            raise ValueError(f"{self.root / MANIFEST}: no faces")
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.size = int(size or self.stored_size)
        self.buffer = int(buffer)

    def __len__(self):
        return int(self.offsets[-1])

    def epoch_order(self, seed, epoch):
        return buffered_order(self.counts, seed, epoch, self.buffer)[0]

    def _shard_jpegs(self, s):
        """(index, jpeg bytes) of shard s in file order; ValueError naming the shard when it
        is truncated, unreadable or holds another count than the manifest says."""
        path, k = self.root / self.names[s], 0
        try:
            with tarfile.open(path, mode="r|") as tar:
                for m in tar:
                    if m.isfile() and m.name.endswith(".jpg"):
                        if k == self.counts[s]:
                            raise ValueError(f"{path}: more faces than the {int(self.counts[s])} the manifest says")
                        yield int(self.offsets[s]) + k, tar.extractfile(m).read()
                        k += 1
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{path}: unreadable shard ({exc})") from None
        if k != self.counts[s]:
            raise ValueError(f"{path}: {k} faces, the manifest says {int(self.counts[s])}")

    def decode(self, jpg, where):
        """JPEG bytes -> {"image": uint8 (size, size, 3)}; ValueError naming where."""
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(io.BytesIO(jpg)) as im:
                image = np.asarray(im.convert("RGB"), np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
            raise ValueError(f"{where}: cannot decode face crop: {exc}") from None
        if image.shape[:2] != (self.size, self.size):
            from .datasets import center_square
            image = center_square(image, self.size)
        return {"image": image}

    def stream(self, order, start=0):
        """(index, sample or ValueError) for order[start:], reading shards in turn and holding
        only the faces read but not yet due (at most the shuffle buffer for an order from
        ``epoch_order``). Shards whose faces all come before ``start`` are not opened."""
        order = np.asarray(order, np.int64)
        due = np.full(len(self), -1, np.int64)
        due[order[start:]] = np.arange(start, len(order))
        shard_of = np.searchsorted(self.offsets, order[start:], side="right") - 1
        shard_ids, first = np.unique(shard_of, return_index=True)
        queue = iter(shard_ids[np.argsort(first)].tolist())  # shards in the order their faces fall due
        reading, pending = iter(()), {}
        for pos in range(start, len(order)):
            want = int(order[pos])
            while want not in pending:
                nxt = next(reading, None)
                if nxt is None:
                    s = next(queue, None)
                    if s is None:
                        raise ValueError(f"{self.root}: face {want} is in no shard (manifest and shards disagree)")
                    reading = self._shard_jpegs(s)
                    continue
                if due[nxt[0]] >= pos:
                    pending[nxt[0]] = nxt[1]
            jpg = pending.pop(want)
            try:
                yield want, self.decode(jpg, f"{self.root} face {want}")
            except ValueError as exc:
                yield want, exc
