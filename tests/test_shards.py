"""Pre-training shards: the WebDataset layout, the buffered shuffle as a pure function of
(seed, epoch), streaming through the Loader with exact mid-epoch resume, flat memory over
100,000 faces, clear errors on broken shards, and a pre-training run that resumes from
shards bit-identically."""
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from conftest import start_and_kill

import pacofr
from pacofr import checkpoint as ck
from pacofr.data import shards
from pacofr.data.loader import Loader
from pacofr.data.synth import synthface_at


def synth_crops(n, size=32, seed=0):
    return synthface_at(size, seed=seed, num_images=max(n, 64)).render_batch(range(n))["image"]


def make_set(root, n=60, per_shard=10, size=32):
    crops = synth_crops(n, size)
    faces = ((crops[i], {"source": "synthface", "index": i}) for i in range(n))
    assert shards.write_shards(root, faces, size, per_shard) == n
    return crops


def test_layout_is_webdataset_and_manifest_counts(tmp_path):
    make_set(tmp_path, n=25, per_shard=10)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["faces"] for s in doc["shards"]] == [10, 10, 5] and doc["faces"] == 25 and doc["size"] == 32
    with tarfile.open(tmp_path / "shard-000002.tar") as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile("000004.json").read())
    assert names == [f"{k:06d}.{ext}" for k in range(5) for ext in ("jpg", "json")]  # key-grouped
    assert meta == {"source": "synthface", "index": 24}
    assert not list(tmp_path.glob(".*.tmp"))


def test_buffered_order_is_a_seeded_permutation():
    counts = [7, 0, 13, 5, 9]
    a, shard_order = shards.buffered_order(counts, seed=3, epoch=1, buffer=8)
    assert sorted(a.tolist()) == list(range(34))
    np.testing.assert_array_equal(a, shards.buffered_order(counts, 3, 1, 8)[0])
    assert not np.array_equal(a, shards.buffered_order(counts, 3, 2, 8)[0])
    assert not np.array_equal(a, shards.buffered_order(counts, 4, 1, 8)[0])
    # a buffer of one face keeps the shards' own order: each shard read straight through
    one, order = shards.buffered_order(counts, 3, 1, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    np.testing.assert_array_equal(one, np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in order]))
    # a face leaves at most `buffer` places before the position it was read at
    stream = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in shard_order])
    read_at = np.empty(34, int)
    read_at[stream] = np.arange(34)
    emitted_at = np.empty(34, int)
    emitted_at[a] = np.arange(34)
    assert (emitted_at >= read_at - 8).all()


def loop_order(counts, seed, epoch, buffer):
    """The buffered shuffle written as the loop it describes (the twin of the vectorised one)."""
    counts = np.asarray(counts, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rng = np.random.default_rng([seed, epoch, 0x5AD])
    order = rng.permutation(len(counts))
    stream = np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in order])
    buffer = max(1, min(buffer, len(stream)))
    slots = rng.integers(0, buffer, size=len(stream) - buffer)
    buf, out = list(stream[:buffer]), []
    for j, incoming in zip(slots, stream[buffer:]):
        out.append(buf[j])
        buf[j] = incoming
    buf = np.array(buf)
    rng.shuffle(buf)
    return np.concatenate([np.array(out, np.int64), buf])


@pytest.mark.parametrize("counts, buffer", [([7, 0, 13, 5, 9], 8), ([100] * 30, 64), ([3], 1), ([5, 5], 100),
                                            ([50] * 10, 1), ([1000] * 20, 4096)])
def test_vectorised_order_equals_the_loop(counts, buffer):
    for seed in range(3):
        np.testing.assert_array_equal(shards.buffered_order(counts, seed, 2, buffer)[0],
                                      loop_order(counts, seed, 2, buffer))


def test_loader_streams_an_epoch_and_resumes_mid_epoch(tmp_path):
    crops = make_set(tmp_path, n=60, per_shard=10)
    ds = shards.ShardSet(tmp_path, buffer=16)
    loader = Loader(ds, 8, seed=5, prefetch=2)
    whole = list(loader.iterate(epoch=1))
    seen = np.concatenate([b["indices"] for b in whole])
    assert len(whole) == 7 and len(set(seen.tolist())) == 56   # drop_last: 7 full batches of 8
    np.testing.assert_array_equal(seen, ds.epoch_order(5, 1)[:56])
    resumed = list(loader.iterate(epoch=1, start=4))
    for a, b in zip(whole[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["indices"], b["indices"])
        np.testing.assert_array_equal(a["images"], b["images"])
    # what comes out is the crop that went in (JPEG quality 95)
    raw = Loader(ds, 8, seed=5, prefetch=0, shuffle=False)
    first = next(iter(raw))
    got = first["images"] * np.array(raw.std)[:, None, None] + np.array(raw.mean)[:, None, None]
    want = crops[:8].transpose(0, 3, 1, 2) / 255.0
    assert np.abs(got - want).mean() < 0.02


def test_resume_skips_consumed_shards_unopened(tmp_path, monkeypatch):
    make_set(tmp_path, n=60, per_shard=10)
    ds = shards.ShardSet(tmp_path, buffer=1)   # no mixing: shards go one after another
    opened = []
    real = ds._shard_jpegs
    monkeypatch.setattr(ds, "_shard_jpegs", lambda s: (opened.append(s), real(s))[1])
    order = ds.epoch_order(0, 0)
    got = [i for i, _ in ds.stream(order, start=35)]
    assert got == order[35:].tolist()
    shard_order = shards.buffered_order(ds.counts, 0, 0, 1)[1]
    assert opened == shard_order[3:].tolist()      # faces 0..29 sat in the first three


def test_other_crop_size_is_resized(tmp_path):
    make_set(tmp_path, n=12, per_shard=12, size=32)
    ds = shards.ShardSet(tmp_path, size=48)
    _, sample = next(ds.stream(np.arange(12)))
    assert sample["image"].shape == (48, 48, 3) and sample["image"].dtype == np.uint8


def test_broken_sets_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        shards.ShardSet(tmp_path)
    (tmp_path / "manifest.json").write_text('{"shards": [{"name": "../x.tar", "faces": 3}], "size": 32}')
    with pytest.raises(ValueError, match="plain .tar file names"):
        shards.ShardSet(tmp_path)
    (tmp_path / "manifest.json").write_text('{"shards": 5}')
    with pytest.raises(ValueError, match="not a pacofr shard manifest"):
        shards.ShardSet(tmp_path)
    make_set(tmp_path, n=20, per_shard=10)
    data = (tmp_path / "shard-000001.tar").read_bytes()
    (tmp_path / "shard-000001.tar").write_bytes(data[:len(data) // 2])       # truncated
    ds = shards.ShardSet(tmp_path, buffer=1)
    with pytest.raises(ValueError, match=r"shard-000001.tar: (unreadable shard|\d+ faces, the manifest says 10)"):
        list(Loader(ds, 4, shuffle=False, prefetch=2))
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["shards"][1]["faces"] = 11
    make_set(tmp_path, n=20, per_shard=10)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="shard-000001.tar: 10 faces, the manifest says 11"):
        list(shards.ShardSet(tmp_path).stream(np.arange(21)))
    doc["shards"][0]["faces"], doc["shards"][1]["faces"] = 9, 10   # shard 0 holds one more than listed:
    (tmp_path / "manifest.json").write_text(json.dumps(doc))         # its 10th is not shard 1's first face
    with pytest.raises(ValueError, match="shard-000000.tar: more faces than the 9 the manifest says"):
        list(shards.ShardSet(tmp_path).stream(np.arange(19)))
    with pytest.raises(ValueError, match="shard_faces must be >= 1"):
        shards.write_shards(tmp_path / "x", [], 32, shard_faces=0)


def test_corrupt_crop_raises_or_is_skipped(tmp_path):
    crops = synth_crops(8)
    faces = [(shards.encode_jpeg(c), {}) for c in crops]
    faces[3] = (b"\xff\xd8 not a jpeg", {})
    shards.write_shard(tmp_path / "shard-000000.tar", faces)
    shards.write_manifest(tmp_path, [("shard-000000.tar", 8)], 32)
    ds = shards.ShardSet(tmp_path)
    with pytest.raises(ValueError, match="sample 3: .*face 3: cannot decode face crop"):
        list(Loader(ds, 2, shuffle=False, prefetch=0))
    skip = Loader(ds, 2, shuffle=False, prefetch=0, on_error="skip")
    batches = list(skip)
    assert [i for i, _ in skip.skipped] == [3] and len(batches) == 3
    assert 3 not in np.concatenate([b["indices"] for b in batches])


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def test_memory_stays_flat_over_100k_faces(tmp_path):
    """An epoch over 100,000 faces in 100 shards: resident memory after the first tenth
    stays within a few MB (the shuffle buffer holds encoded crops, nothing else grows)."""
    size, pool = 16, synth_crops(64, 16)
    jpgs = [shards.encode_jpeg(c) for c in pool]
    names = []
    for s in range(100):
        names.append((shards.shard_name(s), shards.write_shard(
            tmp_path / shards.shard_name(s), ((jpgs[(s * 7 + k) % 64], {"i": s * 1000 + k}) for k in range(1000)))))
    shards.write_manifest(tmp_path, names, size)
    ds = shards.ShardSet(tmp_path, buffer=4096)
    assert len(ds) == 100_000
    loader = Loader(ds, 500, seed=1, prefetch=2)
    rss, count = [], 0
    for k, b in enumerate(loader):
        count += len(b["indices"])
        if k % 10 == 9:
            rss.append(_rss_mb())
    assert count == 100_000
    assert max(rss) - rss[0] < 24, f"resident memory grew from {rss[0]:.0f} to {max(rss):.0f} MB"


def test_pretrain_from_shards_resumes_mid_epoch_bit_identically(tmp_path):
    """kill -9 mid-epoch in a run on shards, resume, and the weights and metrics equal an
    uninterrupted run's (5 batches per epoch: the kill falls in the first, and the run
    crosses two epoch boundaries after the resume)."""
    data = tmp_path / "shards"
    r = subprocess.run([sys.executable, "-m", "pacofr.cli", "synthface", "--shards", str(data), "--num", "40",
                        "--size", "32", "--shard-faces", "7"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    args = ["--model", "pacofr_test_tiny", "--steps", "14", "--batch-size", "8", "--no-progress", "--data", str(data),
            "--checkpoint-every", "2", "--log-every", "1", "--preview-every", "0", "--threads", "2", "--dtype", "fp32",
            "--set", "codebook_size=32", "--set", "belief_hidden=16", "--set", "incubation_steps=3",
            "--set", "shuffle_buffer=12", "--set", "teacher_dtype=model"]
    base = [sys.executable, "-m", "pacofr.cli", "pretrain"]
    killed = tmp_path / "killed"
    start_and_kill(base + args + ["--out", str(killed)], lambda: ck.checkpoint_dirs(killed))
    r = subprocess.run(base + args + ["--out", str(killed), "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = tmp_path / "whole"
    r = subprocess.run(base + args + ["--out", str(whole)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_array_equal(pacofr.load_model(killed).flat_params, pacofr.load_model(whole).flat_params)
    drop = lambda rows: [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]
    rows = lambda out: [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert drop(rows(killed)) == drop(rows(whole))
    assert rows(whole)[-1]["epoch"] == 2     # 14 steps of 5 batches per epoch: the third epoch
