"""Verification and identification (docs/evaluation.md "Verification and identity"): cosine similarity, the
10-fold pairs protocol of LFW with TAR@FAR from the ROC, and cosine kNN top-1 accuracy.

scikit-learn (the ROC, the folds) is imported when ``verification_10fold`` runs:
``pip install pacofr[eval]``. kNN is chunked NumPy, so memory stays bounded.
"""
import numpy as np

from ..data.formats import read_lfw_pairs

_CHUNK_ELEMENTS = 1 << 22   # similarity entries per kNN block (32 MiB of float64)


def _sklearn():
    try:
        import sklearn.metrics
        import sklearn.model_selection
    except ImportError:
        raise ImportError("verification needs scikit-learn: pip install pacofr[eval]") from None
    return sklearn


def _embeddings(x, name):
    """(N, D) float64, finite, no zero rows."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, D) with N, D >= 1, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def l2_normalize(x, name="emb"):
    """(N, D) -> (N, D) float64 rows of unit length; a zero row raises ValueError."""
    a = _embeddings(x, name)
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    zero = np.flatnonzero(norm[:, 0] == 0)
    if zero.size:
        raise ValueError(f"{name} row {zero[0]} is all zeros (no direction to compare)")
    return a / norm


def cosine_similarity(emb1, emb2):
    """Row-wise cosine similarity: emb1, emb2 (P, D) -> (P,)."""
    a, b = l2_normalize(emb1, "emb1"), l2_normalize(emb2, "emb2")
    if a.shape != b.shape:
        raise ValueError(f"emb1 and emb2 must have the same shape, got {a.shape} and {b.shape}")
    return np.einsum("pd,pd->p", a, b)


def _best_threshold(sim, same):
    """Threshold maximising the accuracy of "same if sim >= t" on (sim, same).

    Candidates: the midpoints between consecutive sorted unique similarities, plus one below the
    smallest and one above the largest (every distinct split of the set); ties go to the smallest."""
    order = np.argsort(sim, kind="stable")
    s, y = sim[order], same[order]
    uniq, first = np.unique(s, return_index=True)             # first: start of each value's run
    cuts = np.append(first, s.size)                           # predicted same = s[cut:]
    same_below = np.concatenate([[0], np.cumsum(y)])[cuts]
    diff_below = cuts - same_below
    correct = diff_below + (y.sum() - same_below)
    thresholds = np.concatenate([[uniq[0] - 1.0], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1.0]])
    return float(thresholds[np.argmax(correct)])


def _tar_at_far(fpr, tpr, thresholds, target):
    """Step rule: the highest TPR among the ROC points with FPR <= target."""
    ok = np.flatnonzero(fpr <= target)
    i = ok[np.argmax(tpr[ok])]
    return float(tpr[i]), float(thresholds[i])


def verification_10fold(emb1, emb2, same, folds=10, far_targets=(1e-3, 1e-2), *, flip_averaged=False):
    """The pairs protocol: accuracy over ``folds`` contiguous folds in file order.

    emb1, emb2: (P, D) embeddings of the two faces of each pair; same: (P,) bool or 0/1.
    Folds are sklearn's ``KFold(folds, shuffle=False)``: fold f is the pairs [f*P/10, (f+1)*P/10)
    when ``folds`` divides P (LFW: 600 pairs each); otherwise the first P % folds folds get one
    more pair. For each fold the threshold (same if cosine >= t) is chosen on the other folds to
    maximise their accuracy, among the midpoints between consecutive sorted unique training
    similarities (plus one below the least and one above the greatest; ties: the smallest).
    TAR@FAR uses sklearn's ``roc_curve`` over all pairs with the step rule: the highest TPR of
    the ROC points whose FPR is <= the target (no interpolation).
    ``flip_averaged`` is only recorded: the caller averages the embeddings of flipped images.

    Returns a dict: "mean", "std" (population std over folds), "fold_accuracy", "thresholds",
    "tar_at_far" {target: TAR}, "threshold_at_far", "roc_auc", "fpr", "tpr", "folds",
    "similarity": "cosine", "flip_averaged".
    """
    sk = _sklearn()
    sim = cosine_similarity(emb1, emb2)
    lab = np.asarray(same)
    if lab.shape != sim.shape:
        raise ValueError(f"same must have shape {sim.shape} (one flag per pair), got {lab.shape}")
    if lab.dtype != np.bool_:
        if not np.isin(lab, (0, 1)).all():
            raise ValueError("same must be bool or 0/1")
        lab = lab.astype(bool)
    folds = int(folds)
    if folds < 2 or sim.size < folds:
        raise ValueError(f"need 2 <= folds <= number of pairs, got folds={folds} for {sim.size} pairs")
    if lab.all() or not lab.any():
        raise ValueError("same must contain both same-identity and different-identity pairs")
    accuracy, thresholds = [], []
    for train, test in sk.model_selection.KFold(n_splits=folds, shuffle=False).split(sim):
        t = _best_threshold(sim[train], lab[train])
        thresholds.append(t)
        accuracy.append(float(np.mean((sim[test] >= t) == lab[test])))
    fpr, tpr, roc_thr = sk.metrics.roc_curve(lab, sim, drop_intermediate=False)
    tar, thr = {}, {}
    for target in far_targets:
        tar[target], thr[target] = _tar_at_far(fpr, tpr, roc_thr, target)
    return {"mean": float(np.mean(accuracy)), "std": float(np.std(accuracy)), "fold_accuracy": accuracy,
            "thresholds": thresholds, "tar_at_far": tar, "threshold_at_far": thr,
            "roc_auc": float(sk.metrics.auc(fpr, tpr)), "fpr": fpr, "tpr": tpr, "folds": folds,
            "similarity": "cosine", "flip_averaged": bool(flip_averaged)}


def read_pairs(path):
    """LFW ``pairs.txt`` -> list of (name1, index1, name2, index2, same); the header line
    ("10 300") is optional; a malformed line raises ValueError with its line number.
    (The reader is ``pacofr.data.formats.read_lfw_pairs``.)"""
    return read_lfw_pairs(path)


def top_k_cosine(query, base, k, exclude_self=False):
    """Indices (Q, k) of the k most cosine-similar rows of ``base`` (N, D) for each row of
    ``query`` (Q, D), most similar first. ``exclude_self``: query is base, skip each row itself.
    Rows are l2-normalised first; the work is blocked to ~32 MiB of similarities."""
    q, b = l2_normalize(query, "query"), l2_normalize(base, "base")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"query and base must have the same width, got {q.shape[1]} and {b.shape[1]}")
    available = b.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in [1, {available}] for {b.shape[0]} base rows, got {k}")
    out = np.empty((q.shape[0], k), np.int64)
    step = max(1, _CHUNK_ELEMENTS // b.shape[0])
    for start in range(0, q.shape[0], step):
        sim = q[start:start + step] @ b.T                     # (chunk, N)
        rows = np.arange(sim.shape[0])
        if exclude_self:
            sim[rows, start + rows] = -np.inf
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-sim[rows[:, None], part], axis=1, kind="stable")
        out[start:start + step] = part[rows[:, None], order]
    return out


def _vote(neighbour_labels):
    """(Q, k) integer labels, nearest first -> (Q,) majority label; ties: the tied label whose
    neighbour is nearest."""
    counts = (neighbour_labels[:, :, None] == neighbour_labels[:, None, :]).sum(axis=2)   # (Q, k)
    first_best = np.argmax(counts == counts.max(axis=1, keepdims=True), axis=1)
    return neighbour_labels[np.arange(len(neighbour_labels)), first_best]


def knn_top1(gallery, gallery_labels, probe, probe_labels, k=1):
    """Top-1 identification accuracy of a cosine kNN classifier (majority vote of the k nearest
    gallery rows; ties: the tied label with the nearest neighbour).

    gallery: (G, D), gallery_labels: (G,); probe: (Q, D), probe_labels: (Q,). Labels may be any
    comparable values (ints, strings). A probe whose identity is absent from the gallery counts
    as wrong. Returns a float in [0, 1]."""
    g_rows, p_rows = _embeddings(gallery, "gallery").shape[0], _embeddings(probe, "probe").shape[0]
    gl, pl = np.asarray(gallery_labels), np.asarray(probe_labels)
    if gl.shape != (g_rows,):
        raise ValueError(f"gallery_labels must have shape ({g_rows},), got {gl.shape}")
    if pl.shape != (p_rows,):
        raise ValueError(f"probe_labels must have shape ({p_rows},), got {pl.shape}")
    nearest = top_k_cosine(probe, gallery, int(k))
    _, codes = np.unique(np.concatenate([gl, pl]), return_inverse=True)
    predicted = _vote(codes[:g_rows][nearest])
    return float(np.mean(predicted == codes[g_rows:]))
