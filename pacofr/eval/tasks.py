"""One Python call per benchmark: the data, the head training and the exact metrics (docs/evaluation.md)
put together. Every function returns a plain dict (JSON-ready after ``report.jsonable``).

SynthFace splits of protocol ``synthface-v1``: ``pretrain`` (seed 0), ``train`` (seed 1) and
``test`` (seed 2); ``synthface-v2`` adds ``val`` (seed 3) on which every choice is made.
Identities are drawn per seed, so the identities of each split are disjoint from the others'.
A label budget keeps the first round(fraction * n) training images (nested budgets: the 1%
images are among the 10% ones)."""
import numpy as np

from ..data import SUBSETS
from ..data.datasets import open_landmark_faces
from ..data.loader import normalize_images
from ..data.synth import synthface_at
from . import alignment, parsing, quality, recognition
from .finetune import FitConfig, encode, encoder_of, fit
from ..heads import embeddings

SPLIT_SEEDS = {"pretrain": 0, "train": 1, "test": 2, "val": 3}


def normalize(images_u8):
    """uint8 (n, S, S, 3) -> float32 (n, 3, S, S), normalised as in pre-training."""
    return normalize_images(images_u8)


def synthface_split(split, num_images, size=112, num_identities=None):
    """Render a SynthFace split -> dict: ``images_u8`` (n, S, S, 3), ``images`` (normalised),
    ``landmarks`` (n, 68, 2), ``visible`` (n, 68), ``parsing`` (n, S, S), ``identity`` (n,),
    ``subsets`` {name: (n,) bool}."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_SEEDS)}, got {split!r}")
    ds = synthface_at(size, seed=SPLIT_SEEDS[split], num_images=num_images, num_identities=num_identities)
    b = ds.render_batch(range(num_images))
    subsets = {name: np.array([a["subsets"][name] for a in b["attributes"]]) for name in SUBSETS}
    return {"images_u8": b["image"], "images": normalize(b["image"]), "landmarks": b["landmarks"],
            "visible": b["visible"], "parsing": b["parsing"], "identity": np.asarray(b["identity"], np.int64),
            "subsets": subsets, "split": split, "seed": SPLIT_SEEDS[split]}


def landmark_data(path, size=112):
    """A landmark data set in a public format -> the same dict as ``synthface_split`` (without
    parsing, identities or subsets): faces aligned by their 5 points to size x size crops, with
    ``landmarks`` in crop pixels and ``matrix`` (n, 2, 3) image -> crop. ``path``: a COCO
    keypoint ``.json``, an HRNet ``.csv`` (images beside it) or a folder of images with iBUG
    ``.pts`` files. The crop is a similarity, so NME in crop pixels equals NME in the original
    image's pixels."""
    ds = open_landmark_faces(path, size)
    if ds is None:
        raise ValueError(f"{path}: expected a COCO keypoint .json, an HRNet .csv or a folder with .pts files")
    items = [ds[i] for i in range(len(ds))]
    counts = {len(it["landmarks"]) for it in items}
    if len(counts) != 1:
        raise ValueError(f"{path}: faces with different numbers of landmarks {sorted(counts)}")
    u8 = np.stack([it["image"] for it in items])
    return {"images_u8": u8, "images": normalize(u8), "landmarks": np.stack([it["landmarks"] for it in items]),
            "matrix": np.stack([it["matrix"] for it in items]), "records": ds.records, "split": str(path)}


def label_budget(n, fraction):
    """How many of n training images a label fraction keeps (at least one)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    return max(1, int(round(n * fraction)))


def take(data, k):
    return {key: (v[:k] if isinstance(v, np.ndarray) else v) for key, v in data.items()}


def evaluate_alignment(fitted, data, normalizer="inter_ocular", threshold=0.1, tokens=None):
    """Landmark metrics of a fitted alignment head on data (``images``, ``landmarks``,
    optional ``subsets``): per-image NME and per subset NME, AUC@θ, FR@θ (fractions)."""
    pred = fitted.predict(data["images"], tokens=tokens)
    nmes = alignment.nme(pred, data["landmarks"], normalizer)
    table = alignment.summarize(nmes, threshold, data.get("subsets"))
    return {"protocol": {"normalizer": normalizer, "threshold": threshold, "unit": "fraction",
                         "points": int(pred.shape[1])},
            "subsets": table, "per_image_nme": nmes, "pred": pred}


def predict_labels(fitted, images, batch_size=64, tokens=None):
    """Arg-max label maps (n, S, S) uint8 of a fitted parsing head."""
    n = len(tokens if tokens is not None else images)
    out = [fitted.predict(None if tokens is not None else images[k:k + batch_size],
                          tokens=None if tokens is None else tokens[k:k + batch_size]).argmax(1).astype(np.uint8)
           for k in range(0, n, batch_size)]
    return np.concatenate(out)


def evaluate_parsing(fitted, data, num_classes=11, tokens=None):
    """Parsing F1 from one confusion matrix over every pixel of data (scored at the crop
    resolution, which for SynthFace is the images' own)."""
    pred = predict_labels(fitted, data["images"], tokens=tokens)
    cm = parsing.ConfusionMatrix(num_classes)
    cm.update(pred, data["parsing"])
    res = cm.f1()
    res["resolution"] = f"{pred.shape[1]}x{pred.shape[2]} (native)"
    res["pred"] = pred
    return res


def _test_tokens(cfg, tokens):
    """The frozen test tokens stand in for the encoder only for a linear probe."""
    return tokens[1] if tokens is not None and cfg.mode == "linear" else None


def run_alignment(model, train, test, cfg=None, labels=1.0, normalizer="inter_ocular", threshold=0.1,
                  progress=False, tokens=None, probe=None, monitor=None):
    """Train an alignment head (cfg: FitConfig, task "alignment") on the first
    ``label_budget(len(train), labels)`` training images, then score it on test. tokens:
    optional (train tokens, test tokens) of the frozen encoder, shared by linear probes (and by
    the probe stage of LP-FT fine-tuning). probe: the linear probe (a ``Fitted``) to fine-tune
    from (LP-FT). monitor: ``fit``'s (every, fn) validation curve."""
    cfg = cfg or FitConfig(task="alignment")
    k = label_budget(len(train["images"]), labels)
    tr = take(train, k)
    fitted = fit(model, tr["images"], tr["landmarks"], cfg, progress=progress,
                 tokens=None if tokens is None else tokens[0][:k], probe=probe, monitor=monitor)
    res = evaluate_alignment(fitted, test, normalizer, threshold, tokens=_test_tokens(cfg, tokens))
    res.update(train_images=k, labels=labels, config=cfg.__dict__, history=fitted.history)
    return res, fitted


def run_parsing(model, train, test, cfg=None, labels=1.0, num_classes=11, progress=False, tokens=None, probe=None,
                monitor=None):
    """Train a parsing head (cfg task "parsing") on the first label-budget images, score F1.
    tokens, probe, monitor: as for run_alignment."""
    cfg = cfg or FitConfig(task="parsing", head="linear")
    k = label_budget(len(train["images"]), labels)
    tr = take(train, k)
    fitted = fit(model, tr["images"], tr["parsing"], cfg, num_outputs=num_classes, progress=progress,
                 tokens=None if tokens is None else tokens[0][:k], probe=probe, monitor=monitor)
    res = evaluate_parsing(fitted, test, num_classes, tokens=_test_tokens(cfg, tokens))
    res.update(train_images=k, labels=labels, config=cfg.__dict__, history=fitted.history)
    return res, fitted


def verification_pairs(identity, num_pairs=600, folds=10, seed=0):
    """LFW-style pairs over a labelled set: ``folds`` folds in order, each half same-identity
    and half different-identity pairs -> (i, j, same) index arrays."""
    identity = np.asarray(identity)
    rng = np.random.default_rng(seed)
    by_id = {}
    for i, t in enumerate(identity):
        by_id.setdefault(int(t), []).append(i)
    multi = [v for v in by_id.values() if len(v) >= 2]
    if not multi or len(by_id) < 2:
        raise ValueError("verification pairs need an identity with two images and at least two identities")
    per_fold = num_pairs // folds
    I, J, same = [], [], []
    for _ in range(folds):
        for s in range(per_fold):
            if s < per_fold // 2:
                group = multi[rng.integers(len(multi))]
                a, b = rng.choice(len(group), 2, replace=False)
                I.append(group[a]), J.append(group[b]), same.append(True)
            else:
                while True:
                    a, b = rng.integers(len(identity), size=2)
                    if identity[a] != identity[b]:
                        break
                I.append(a), J.append(b), same.append(False)
    return np.array(I), np.array(J), np.array(same)


def _frozen_tokens(model, images, tokens):
    """The frozen encoder's tokens of images: the given ones, or computed once here."""
    return tokens if tokens is not None else encode(encoder_of(model), images)


def run_recognition(model, test, train=None, pools=("cls", "mean"), cfg=None, num_pairs=600, progress=False,
                    tokens=None):
    """Identity from frozen embeddings: 10-fold pairs verification and kNN top-1
    identification on test (gallery: each identity's first image; probes: the rest), per
    pooling; with train, also a linear-probe identity classifier trained on the first 80% of
    train's images and scored on the other 20% (same identities). tokens: the frozen
    encoder's tokens of test, when already computed."""
    test_tokens = _frozen_tokens(model, test["images"], tokens)
    ident = test["identity"]
    I, J, same = verification_pairs(ident, num_pairs)
    first = {}
    for i, t in enumerate(ident):
        first.setdefault(int(t), i)
    gallery = np.array(sorted(first.values()))
    probes = np.setdiff1d(np.arange(len(ident)), gallery)
    out = {"pairs": int(len(I)), "flip_averaged": False, "similarity": "cosine",
           "knn": {"gallery": "first image of each identity", "probes": int(len(probes)), "k": 1}}
    train_tokens = None
    for pool in pools:
        emb = embeddings(test_tokens, pool)
        res = {"verification": recognition.verification_10fold(emb[I], emb[J], same),
               "knn_top1": recognition.knn_top1(emb[gallery], ident[gallery], emb[probes], ident[probes])}
        if train is not None:
            cut = int(0.8 * len(train["images"]))
            c = cfg or FitConfig(task="identity", head=pool, steps=300)
            c = FitConfig(**{**c.__dict__, "head": pool, "task": "identity"})
            if train_tokens is None:  # one encode of the train faces serves every pooling's probe
                train_tokens = encode(encoder_of(model), train["images"])
            fitted = fit(model, train["images"][:cut], train["identity"][:cut], c,
                         num_outputs=int(train["identity"].max()) + 1, progress=progress,
                         tokens=train_tokens[:cut] if c.mode == "linear" or c.probe_steps else None)
            held_out = train_tokens[cut:] if c.mode == "linear" else None
            logits = fitted.predict(train["images"][cut:], tokens=held_out)
            res["linear_probe_top1"] = float((logits.argmax(1) == train["identity"][cut:]).mean())
        out[pool] = res
    return out


def run_quality(model, data, pools=("cls", "mean"), k=10, alpha=0.5, tokens=None):
    """docs/evaluation.md's representation quality (neighbour consistency, effective rank, IQ) of the
    frozen embeddings of data, with its identity labels. tokens: the frozen encoder's tokens
    of data, when already computed."""
    data_tokens = _frozen_tokens(model, data["images"], tokens)
    return {pool: quality.iq(embeddings(data_tokens, pool), data["identity"], k=k, alpha=alpha) for pool in pools}
