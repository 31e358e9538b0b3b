"""Evaluation metrics against hand-worked values and the definitions of docs/evaluation.md."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from pacofr.eval import alignment, parsing, quality, recognition, report

# docs/evaluation.md's normaliser table, written out here independently of pacofr.data.schemes.
EYE_GROUPS = {
    ("68", "inter_ocular"): ([36], [45]),
    ("68", "inter_pupil"): (list(range(36, 42)), list(range(42, 48))),
    ("98", "inter_ocular"): ([60], [72]),
    ("98", "inter_pupil"): ([96], [97]),
    ("19", "inter_ocular"): ([6], [11]),
    ("19", "inter_pupil"): ([7], [10]),
}


def _shifted(gt, dx=3.0, dy=4.0):
    return gt + np.array([dx, dy])


# ---------------------------------------------------------------- NME

def test_nme_hand_worked_68():
    gt = np.random.default_rng(0).uniform(0, 256, (1, 68, 2))
    gt[0, 36], gt[0, 45] = (100, 200), (200, 200)            # outer eye corners 100 px apart
    out = alignment.nme(_shifted(gt), gt)                    # every point off by 5 px
    assert out.shape == (1,)
    assert out[0] == pytest.approx(0.05, abs=1e-12)


@pytest.mark.parametrize("scheme,normalizer", sorted(EYE_GROUPS))
def test_nme_index_pairs(scheme, normalizer):
    rng = np.random.default_rng(1)
    left, right = EYE_GROUPS[scheme, normalizer]
    gt = rng.uniform(0, 256, (3, int(scheme), 2))           # the other points are random
    for idx, centre in ((left, (40.0, 90.0)), (right, (100.0, 170.0))):   # centres 100 px apart
        offsets = rng.normal(0, 5, (3, len(idx), 2))
        gt[:, idx] = centre + offsets - offsets.mean(axis=1, keepdims=True)
    expected = 5.0 / 100.0
    np.testing.assert_allclose(alignment.nme(_shifted(gt), gt, normalizer), expected, rtol=1e-12)
    np.testing.assert_allclose(alignment.nme(_shifted(gt), gt, normalizer, scheme=scheme), expected, rtol=1e-12)


@pytest.mark.parametrize("normalizer", ["inter_ocular", "inter_pupil"])
def test_nme_similarity_invariant(normalizer):
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 200, (4, 68, 2))
    pred = gt + rng.normal(0, 3, gt.shape)
    angle, scale, shift = 0.7, 2.5, np.array([-30.0, 55.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = alignment.nme(pred @ rot.T + shift, gt @ rot.T + shift, normalizer)
    np.testing.assert_allclose(moved, alignment.nme(pred, gt, normalizer), rtol=1e-10)


def test_nme_box_and_diag():
    gt = np.random.default_rng(3).uniform(0, 50, (2, 7, 2))   # 7 points: no eye scheme needed
    boxes = np.array([[10, 20, 40, 60], [0, 0, 30, 40]], np.float64)   # w 30, h 40
    np.testing.assert_allclose(alignment.nme(_shifted(gt), gt, "box", boxes=boxes), 5 / math.sqrt(1200))
    np.testing.assert_allclose(alignment.nme(_shifted(gt), gt, "diag", boxes=boxes), 0.1)


def test_nme_visible_mask():
    gt = np.zeros((2, 19, 2))
    gt[:, 6], gt[:, 11] = (0, 0), (10, 0)                    # inter-ocular 10
    pred = gt.copy()
    pred[:, :, 0] += np.arange(19)                           # point l is off by l px
    visible = np.zeros((2, 19), bool)
    visible[0, [1, 2, 3]] = True                              # mean error 2
    visible[1] = True                                         # mean error 9
    np.testing.assert_allclose(alignment.nme(pred, gt, visible=visible), [0.2, 0.9])
    np.testing.assert_allclose(alignment.nme(pred, gt), [0.9, 0.9])
    visible[1] = False
    with pytest.raises(ValueError, match="image 1 has no visible landmark"):
        alignment.nme(pred, gt, visible=visible)
    with pytest.raises(TypeError, match="visible must be a bool array"):
        alignment.nme(pred, gt, visible=np.ones((2, 19)))
    with pytest.raises(ValueError, match=r"visible must have shape \(2, 19\)"):
        alignment.nme(pred, gt, visible=np.ones((2, 18), bool))


def test_nme_bad_inputs():
    gt = np.random.default_rng(4).uniform(0, 100, (2, 68, 2))
    with pytest.raises(ValueError, match=r"pred must have shape \(B, L, 2\), got \(68, 2\)"):
        alignment.nme(gt[0], gt[0])
    with pytest.raises(ValueError, match=r"gt must have shape \(B, L, 2\)"):
        alignment.nme(gt, np.zeros((2, 68, 3)))
    with pytest.raises(ValueError, match="same shape"):
        alignment.nme(gt[:1], gt)
    bad = gt.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="pred contains NaN or Inf"):
        alignment.nme(bad, gt)
    bad[1, 3, 0] = np.inf
    with pytest.raises(ValueError, match="gt contains NaN or Inf"):
        alignment.nme(gt, bad)
    with pytest.raises(TypeError, match="pred must be a numeric array"):
        alignment.nme([["a", "b"]], gt)
    with pytest.raises(ValueError, match="unknown normalizer 'ocular'"):
        alignment.nme(gt, gt, "ocular")
    with pytest.raises(ValueError, match="needs the ground-truth boxes"):
        alignment.nme(gt, gt, "box")
    with pytest.raises(ValueError, match=r"boxes must have shape \(2, 4\)"):
        alignment.nme(gt, gt, "diag", boxes=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="box 1 is"):
        alignment.nme(gt, gt, "box", boxes=[[0, 0, 5, 5], [3, 3, 3, 9]])
    same_eyes = gt.copy()
    same_eyes[1, 45] = same_eyes[1, 36]
    with pytest.raises(ValueError, match="inter_ocular distance is zero for image 1"):
        alignment.nme(gt, same_eyes)
    with pytest.raises(ValueError, match="no inter-ocular/inter-pupil normaliser for 10 landmarks"):
        alignment.nme(gt[:, :10], gt[:, :10])
    with pytest.raises(ValueError, match="scheme '5'"):
        alignment.nme(gt, gt, scheme="5")
    with pytest.raises(ValueError, match="scheme '98' has 98 points, landmarks have 68"):
        alignment.nme(gt, gt, scheme="98")


def test_protocols():
    p = alignment.PROTOCOLS
    assert (p["300w"].normalizer, p["300w"].threshold) == ("inter_ocular", 0.10)
    assert (p["wflw"].normalizer, p["wflw"].threshold) == ("inter_ocular", 0.10)
    assert (p["aflw19"].normalizer, p["aflw19"].threshold) == ("box", 0.07)
    assert (p["synthface-v1"].normalizer, p["synthface-v1"].threshold) == ("inter_ocular", 0.10)


# ---------------------------------------------------------------- CED, AUC, FR

def test_ced_grid_and_values():
    x, y = alignment.ced([0.01, 0.03], 0.1)
    assert len(x) == 1001 and x[0] == 0 and x[-1] == 0.1
    np.testing.assert_allclose(np.diff(x), 1e-4)
    assert y[np.searchsorted(x, 0.02)] == 0.5 and y[-1] == 1.0 and y[0] == 0.0
    assert len(alignment.ced([0.01], 0.07)[0]) == 701


def test_auc_fr_extremes():
    assert alignment.auc_fr(np.zeros(5), 0.1) == (pytest.approx(1.0, abs=1e-12), 0.0)
    assert alignment.auc_fr([0.2, 0.3, 0.11], 0.1) == (0.0, 1.0)


def test_auc_fr_uniform_and_step():
    # NMEs uniform on [0, 0.2]: CED(x) = x / 0.2, AUC@0.1 = (1/0.1) ∫0^0.1 x/0.2 dx = 0.25, FR = 0.5
    nmes = (np.arange(20000) + 0.5) / 20000 * 0.2
    auc, fr = alignment.auc_fr(nmes, 0.1)
    assert auc == pytest.approx(0.25, abs=1e-3) and fr == pytest.approx(0.5)
    # one image at NME 0.05: CED is a unit step at 0.05, AUC@0.1 = 0.5
    auc, fr = alignment.auc_fr([0.05], 0.1)
    assert auc == pytest.approx(0.5, abs=1e-3) and fr == 0.0
    assert isinstance(auc, float) and isinstance(fr, float)


def test_fr_is_strict():
    assert alignment.auc_fr([0.1, 0.1, 0.05, 0.2], 0.1)[1] == 0.25
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        alignment.auc_fr([0.1], 0)
    with pytest.raises(ValueError, match="non-negative"):
        alignment.auc_fr([0.1, -0.01], 0.1)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        alignment.auc_fr([], 0.1)


def test_summarize_subsets():
    nmes = np.array([0.02, 0.04, 0.2, 0.06])
    hard = np.array([False, False, True, True])
    out = alignment.summarize(nmes, 0.1, {"hard": hard, "none": np.zeros(4, bool)})
    assert out["all"]["count"] == 4 and out["all"]["nme"] == pytest.approx(0.08)
    assert out["all"]["fr"] == 0.25 and out["hard"]["fr"] == 0.5 and out["hard"]["count"] == 2
    assert out["hard"]["nme"] == pytest.approx(0.13)
    assert out["hard"]["auc"] == pytest.approx(alignment.auc_fr(nmes[hard], 0.1)[0])
    assert out["none"]["count"] == 0 and math.isnan(out["none"]["nme"])
    with pytest.raises(ValueError, match="subset 'hard' must be a bool mask"):
        alignment.summarize(nmes, 0.1, {"hard": [0, 1, 1, 0]})
    with pytest.raises(ValueError, match="reserved"):
        alignment.summarize(nmes, 0.1, {"all": hard})


# ---------------------------------------------------------------- parsing F1

def test_class_names():
    assert len(parsing.LAPA_CLASSES) == 11 and len(parsing.CELEBAMASK_CLASSES) == 19
    assert parsing.LAPA_CLASSES[2] == "left_brow" and parsing.LAPA_CLASSES[8] == "inner_mouth"
    assert parsing.LAPA_CLASSES[-1] == "hair" and parsing.CELEBAMASK_CLASSES[13] == "upper_lip"


def test_f1_hand_worked():
    gt = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[0, 1, 2], [2, 1, 0]])
    cm = parsing.confusion_matrix(pred, gt, 3)
    np.testing.assert_array_equal(cm, [[2, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert cm.dtype == np.int64
    r = parsing.f1(pred, gt, 3)
    np.testing.assert_allclose(r["per_class"], [1.0, 0.5, 0.5])
    assert r["mean_f1"] == pytest.approx(0.5) and r["background"] == 0
    assert parsing.f1_from_confusion(cm, background=None)["mean_f1"] == pytest.approx(2 / 3)
    swapped = parsing.f1(gt, pred, 3)
    np.testing.assert_allclose(swapped["per_class"], r["per_class"])
    np.testing.assert_array_equal(swapped["confusion"], cm.T)


def test_f1_is_data_set_level():
    gt_a, pred_a = np.ones((2, 2), int), np.ones((2, 2), int)
    gt_b, pred_b = np.array([[2, 2], [2, 1]]), np.full((2, 2), 2)
    acc = parsing.ConfusionMatrix(3)
    acc.update(pred_a, gt_a).update(pred_b, gt_b)
    whole = acc.f1()
    # class 1: TP 4, 4 predicted, 5 true -> 8/9; class 2: TP 3, 4 predicted, 3 true -> 6/7
    assert whole["mean_f1"] == pytest.approx((8 / 9 + 6 / 7) / 2)
    concatenated = parsing.f1(np.concatenate([pred_a, pred_b], 1), np.concatenate([gt_a, gt_b], 1), 3)
    batch = parsing.f1(np.stack([pred_a, pred_b]), np.stack([gt_a, gt_b]), 3)
    for other in (concatenated, batch):
        np.testing.assert_array_equal(other["confusion"], whole["confusion"])
        assert other["mean_f1"] == whole["mean_f1"]
    per_image = np.mean([parsing.f1(pred_a, gt_a, 3)["mean_f1"], parsing.f1(pred_b, gt_b, 3)["mean_f1"]])
    assert per_image == pytest.approx((1 + 3 / 7) / 2) and abs(per_image - whole["mean_f1"]) > 0.1
    acc.reset()
    assert acc.matrix.sum() == 0


def test_f1_absent_class_is_nan_and_skipped():
    gt = np.array([[0, 1], [2, 2]])
    pred = np.array([[0, 1], [2, 1]])
    r = parsing.f1(pred, gt, 4)
    assert math.isnan(r["per_class"][3])
    assert r["mean_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)   # classes 1 and 2 only


def test_confusion_bad_labels():
    gt = np.array([[0, 1], [2, 2]])
    with pytest.raises(ValueError, match=r"pred has labels \[5\] outside \[0, 3\)"):
        parsing.confusion_matrix(np.array([[0, 5], [1, 1]]), gt, 3)
    with pytest.raises(ValueError, match=r"gt has labels \[-1\]"):
        parsing.confusion_matrix(gt, np.array([[0, -1], [2, 2]]), 3)
    ignored = np.array([[0, 255], [255, 2]])
    cm = parsing.confusion_matrix(gt, ignored, 3, ignore_index=255)
    assert cm.sum() == 2 and cm[0, 0] == 1 and cm[2, 2] == 1
    with pytest.raises(TypeError, match="pred must be an integer label map"):
        parsing.confusion_matrix(gt.astype(float), gt, 3)
    with pytest.raises(ValueError, match="same shape"):
        parsing.confusion_matrix(gt, gt[:1], 3)
    with pytest.raises(ValueError, match=r"gt must be a label map"):
        parsing.confusion_matrix(gt, gt.ravel(), 3)


def test_per_class_table():
    gt = np.array([[0, 1, 1], [2, 2, 0]])
    pred = np.array([[0, 1, 2], [2, 1, 0]])
    table = parsing.per_class_table(parsing.f1(pred, gt, 3), ["background", "skin", "hair"])
    lines = table.strip().splitlines()
    assert lines[0] == "| id | class | F1 (%) | GT pixels | pred pixels |"
    assert lines[3] == "| 1 | skin | 50.00 | 2 | 2 |"
    assert "background, not in mean" in lines[2]
    assert lines[-1] == "|  | mean F1 (non-background) | 50.00 |  |  |"


# ---------------------------------------------------------------- verification

def _pairs_with_similarity(sims):
    """Embeddings whose row-wise cosine similarities are exactly ``sims``."""
    sims = np.asarray(sims, np.float64)
    emb1 = np.tile([1.0, 0.0], (len(sims), 1))
    emb2 = np.stack([sims, np.sqrt(1 - sims ** 2)], axis=1)
    return emb1, emb2


def test_cosine_similarity():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[6.0, 8.0], [0.0, 2.0]])
    np.testing.assert_allclose(recognition.cosine_similarity(a, b), [1.0, 0.0])
    with pytest.raises(ValueError, match="emb2 row 0 is all zeros"):
        recognition.cosine_similarity(a, np.zeros((2, 2)))


def test_verification_separable():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(5)
    emb1 = rng.normal(size=(600, 8))
    same = np.tile([True, False], 300)
    emb2 = np.where(same[:, None], emb1, -emb1) + 0.01 * rng.normal(size=emb1.shape)
    r = recognition.verification_10fold(emb1, emb2, same, flip_averaged=True)
    assert r["mean"] == 1.0 and r["std"] == 0.0 and len(r["fold_accuracy"]) == 10
    assert r["tar_at_far"][1e-3] == 1.0 and r["roc_auc"] == 1.0
    assert r["similarity"] == "cosine" and r["flip_averaged"] is True


def test_verification_random_is_chance():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(6)
    r = recognition.verification_10fold(rng.normal(size=(2000, 32)), rng.normal(size=(2000, 32)),
                                        rng.random(2000) < 0.5)
    assert 0.4 < r["mean"] < 0.6 and 0.4 < r["roc_auc"] < 0.6


def test_verification_threshold_from_other_folds():
    pytest.importorskip("sklearn")
    # 10 folds of 10 pairs in file order. Folds 1..9: same 0.8, different 0.2. Fold 0: same 0.45,
    # different 0.1. Fold 0's threshold comes from folds 1..9 only: midway, 0.5, which rejects
    # fold 0's same pairs (accuracy 0.5). Every other fold sees fold 0 in training: 0.325.
    same = np.tile([True] * 5 + [False] * 5, 10)
    sims = np.where(same, 0.8, 0.2)
    sims[:10] = np.where(same[:10], 0.45, 0.1)
    r = recognition.verification_10fold(*_pairs_with_similarity(sims), same.astype(int))
    assert r["thresholds"][0] == pytest.approx(0.5)
    assert r["fold_accuracy"][0] == 0.5
    np.testing.assert_allclose(r["thresholds"][1:], 0.325)
    assert r["fold_accuracy"][1:] == [1.0] * 9
    assert r["mean"] == pytest.approx(0.95) and r["std"] == pytest.approx(0.15)


def test_tar_at_far_matches_direct_count():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(7)
    p = 2000
    same = rng.random(p) < 0.5
    emb1 = rng.normal(size=(p, 16))
    emb2 = np.where(same[:, None], emb1 + 1.2 * rng.normal(size=(p, 16)), rng.normal(size=(p, 16)))
    r = recognition.verification_10fold(emb1, emb2, same, far_targets=(1e-3, 1e-2, 0.1))
    sim = recognition.cosine_similarity(emb1, emb2)
    pos, neg = np.sort(sim[same]), np.sort(sim[~same])
    for target in (1e-3, 1e-2, 0.1):
        # accept if sim >= t: try every observed value as t (and +inf), keep FAR <= target
        best = 0.0
        for t in np.append(np.unique(sim), np.inf):
            far = (neg.size - np.searchsorted(neg, t, side="left")) / neg.size
            if far <= target:
                best = max(best, (pos.size - np.searchsorted(pos, t, side="left")) / pos.size)
        assert r["tar_at_far"][target] == pytest.approx(best, abs=1e-12)
    greater = (sim[same][:, None] > sim[~same][None, :]).mean()
    ties = (sim[same][:, None] == sim[~same][None, :]).mean()
    assert r["roc_auc"] == pytest.approx(greater + 0.5 * ties)
    assert 0.2 < r["tar_at_far"][0.1] < 1.0                   # not a degenerate case


def test_verification_bad_inputs():
    pytest.importorskip("sklearn")
    e = np.random.default_rng(8).normal(size=(20, 4))
    same = np.arange(20) % 2 == 0
    with pytest.raises(ValueError, match="same shape"):
        recognition.verification_10fold(e, e[:, :3], same)
    bad = e.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="emb1 contains NaN"):
        recognition.verification_10fold(bad, e, same)
    with pytest.raises(ValueError, match=r"same must have shape \(20,\)"):
        recognition.verification_10fold(e, e, same[:10])
    with pytest.raises(ValueError, match="2 <= folds <= number of pairs"):
        recognition.verification_10fold(e[:5], e[:5], same[:5])
    with pytest.raises(ValueError, match="both same-identity and different-identity"):
        recognition.verification_10fold(e, e, np.ones(20, bool))
    with pytest.raises(ValueError, match="bool or 0/1"):
        recognition.verification_10fold(e, e, np.arange(20) % 3)


def test_read_pairs(tmp_path):
    good = tmp_path / "pairs.txt"
    good.write_text("1 1\nAlice 1 2\nBob 3 Carol 4\n")
    assert recognition.read_pairs(good) == [("Alice", 1, "Alice", 2, True), ("Bob", 3, "Carol", 4, False)]
    bad = tmp_path / "bad.txt"
    bad.write_text("Alice 1 2\nBob 3 Carol\n")
    with pytest.raises(ValueError, match=r"bad.txt:2:"):
        recognition.read_pairs(bad)


# ---------------------------------------------------------------- identification

def _at_degrees(angles):
    a = np.radians(angles)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_knn_top1_hand_worked():
    gallery = _at_degrees([0, 90, 180])
    probe = _at_degrees([10, 80, 170, 260])
    assert recognition.knn_top1(gallery, ["a", "b", "c"], probe, ["a", "a", "c", "c"]) == 0.75
    # probe at 8°: nearest 10° (b), then 0° (a), then 30° (a)
    gallery = _at_degrees([0, 30, 10, 180])
    labels = [0, 0, 1, 2]
    probe = _at_degrees([8])
    assert recognition.knn_top1(gallery, labels, probe, [1], k=1) == 1.0
    assert recognition.knn_top1(gallery, labels, probe, [1], k=2) == 1.0   # tie 1-1: the nearest wins
    assert recognition.knn_top1(gallery, labels, probe, [1], k=3) == 0.0   # a outvotes b
    assert recognition.knn_top1(gallery, labels, probe, [7]) == 0.0        # identity not in gallery
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        recognition.knn_top1(gallery, labels, probe, [1], k=5)
    with pytest.raises(ValueError, match=r"gallery_labels must have shape \(4,\)"):
        recognition.knn_top1(gallery, labels[:3], probe, [1])


def test_knn_chunked_matches_brute_force(monkeypatch):
    rng = np.random.default_rng(9)
    gallery, probe = rng.normal(size=(50, 6)), rng.normal(size=(23, 6))
    g_lab, p_lab = rng.integers(0, 5, 50), rng.integers(0, 5, 23)
    expected = recognition.knn_top1(gallery, g_lab, probe, p_lab, k=1)
    sims = recognition.l2_normalize(probe) @ recognition.l2_normalize(gallery).T
    assert expected == np.mean(g_lab[sims.argmax(axis=1)] == p_lab)
    monkeypatch.setattr(recognition, "_CHUNK_ELEMENTS", 120)     # blocks of 2 probes
    assert recognition.knn_top1(gallery, g_lab, probe, p_lab, k=1) == expected
    np.testing.assert_array_equal(recognition.top_k_cosine(probe, gallery, 4),
                                  np.argsort(-sims, axis=1, kind="stable")[:, :4])


# ---------------------------------------------------------------- representation quality

def test_effective_rank_hand_worked():
    assert quality.effective_rank(np.eye(4), center=False) == pytest.approx(4.0)
    assert quality.effective_rank(np.eye(4)) == pytest.approx(3.0)     # centred: rank 3, equal σ
    rows = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1]])            # uncentred σ = √3, 1
    p = np.array([math.sqrt(3), 1.0]) / (1 + math.sqrt(3))
    assert quality.effective_rank(rows, center=False) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_effective_rank_bounds():
    rng = np.random.default_rng(10)
    v = rng.normal(size=16)
    signs = rng.choice([-1.0, 1.0], size=(200, 1))
    assert quality.effective_rank(signs * v) == pytest.approx(1.0, abs=1e-9)           # rank 1
    assert quality.effective_rank(np.tile(v, (30, 1)), center=False) == pytest.approx(1.0, abs=1e-9)
    assert quality.effective_rank(np.tile(v, (30, 1))) == 1.0                         # collapsed
    iso = quality.effective_rank(rng.normal(size=(4000, 16)))
    assert 0.97 * 16 < iso <= 16
    for n, d in ((5, 20), (40, 3), (12, 12)):
        for center in (True, False):
            er = quality.effective_rank(rng.normal(size=(n, d)), center)
            assert 1.0 <= er <= min(n, d) + 1e-9


def test_neighbour_consistency():
    rng = np.random.default_rng(11)
    clusters = np.concatenate([[10.0, 0, 0] + rng.normal(0, 0.1, (11, 3)),
                               [0, 10.0, 0] + rng.normal(0, 0.1, (11, 3))])
    assert quality.neighbour_consistency(clusters, [0] * 11 + [1] * 11, k=10) == 1.0
    # angles 0, 10, 25, 100 labelled A A B B: k=1 nearest are 10, 0, 10, 25 -> 3 of 4 agree;
    # k=2: {10,25}, {0,25}, {10,0}, {25,10} -> 1/2, 1/2, 0, 1/2
    emb, labels = _at_degrees([0, 10, 25, 100]), np.array(["A", "A", "B", "B"])
    assert quality.neighbour_consistency(emb, labels, k=1) == pytest.approx(0.75)
    assert quality.neighbour_consistency(emb, labels, k=2) == pytest.approx(0.375)
    with pytest.raises(ValueError, match="k must satisfy 1 <= k < N = 4"):
        quality.neighbour_consistency(emb, labels, k=4)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        quality.neighbour_consistency(emb, labels[:3], k=1)
    with pytest.raises(ValueError, match="emb contains NaN"):
        quality.neighbour_consistency(np.full((4, 2), np.nan), labels, k=1)
    with pytest.raises(ValueError, match=r"emb must have shape \(N, D\)"):
        quality.effective_rank(np.ones(5))


def test_iq_combines():
    emb, labels = _at_degrees([0, 10, 25, 100]), [0, 0, 1, 1]
    r = quality.iq(emb, labels, k=1, alpha=0.3)
    erank = quality.effective_rank(emb)
    assert r["consistency"] == pytest.approx(0.75) and r["effective_rank"] == pytest.approx(erank)
    assert r["normalized_effective_rank"] == pytest.approx(erank / 2)
    assert r["iq"] == pytest.approx(0.3 * 0.75 + 0.7 * erank / 2)
    assert (r["k"], r["alpha"], r["centred"]) == (1, 0.3, True)
    with pytest.raises(ValueError, match="alpha must be in"):
        quality.iq(emb, labels, k=1, alpha=1.5)


# ---------------------------------------------------------------- report

def test_eval_import_is_light():
    code = "import sys, pacofr.eval; print(sorted(m for m in ('matplotlib', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_markdown_table():
    rows = [{"model": "mae", "nme": 4.123, "n": 3}, {"model": "a|b", "nme": float("nan")}]
    assert report.markdown_table(rows, ["model", "nme", "n"], floatfmt=".1f") == (
        "| model | nme | n |\n|---|---|---|\n| mae | 4.1 | 3 |\n| a\\|b | n/a |  |\n")


def test_write_report_round_trip(tmp_path):
    results = {"nme": np.float32(0.25), "per_class": np.array([0.5, np.nan]), "tar": {1e-3: 0.9},
               "pair": (1, np.int64(2)), "flag": np.bool_(True), "inf": float("inf")}
    paths = report.write_report(tmp_path / "out", "wflw", results, {"F1": "| a |\n|---|\n| 1 |\n"})
    data = json.loads(open(paths["json"]).read())
    assert data == {"nme": 0.25, "per_class": [0.5, None], "tar": {"0.001": 0.9}, "pair": [1, 2],
                    "flag": True, "inf": None}
    md = open(paths["md"]).read()
    assert md.startswith("# wflw\n") and "## F1\n\n| a |\n|---|\n| 1 |\n" in md
    assert sorted(os.listdir(tmp_path / "out")) == ["wflw.json", "wflw.md"]        # no temp files left
    with pytest.raises(TypeError, match=r"results\['bad'\]: cannot write a object"):
        report.write_report(tmp_path, "x", {"bad": object()})


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(12)
    assert _is_png(report.plot_ced({"a": rng.uniform(0, 0.15, 50), "b": rng.uniform(0, 0.1, 50)}, 0.1,
                                   tmp_path / "ced.png"))
    assert _is_png(report.plot_f1_bars({"a": rng.random(11), "b": rng.random(11)}, parsing.LAPA_CLASSES,
                                       tmp_path / "f1.png"))
    assert _is_png(report.plot_roc({"a": (np.array([0, 1e-3, 0.1, 1]), np.array([0, 0.5, 0.9, 1]))},
                                   tmp_path / "roc.png"))
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    pts = rng.uniform(0, 32, (3, 68, 2))
    assert _is_png(report.plot_landmarks(images, pts, pts + 1, tmp_path / "lm.png", columns=2))
    assert _is_png(report.plot_landmarks(rng.normal(size=(2, 3, 32, 32)), pts[:2], None, tmp_path / "lm2.png"))
    maps = rng.integers(0, 11, (3, 32, 32))
    assert _is_png(report.plot_parsing(images, maps, maps, tmp_path / "parsing.png"))
    assert _is_png(report.plot_parsing(images, rng.integers(0, 19, (3, 32, 32)), None, tmp_path / "p19.png",
                                       num_classes=19))
