"""PaCo-FR substitution positions (docs/method.md section 2): which kept patches the codebook
replaces, the C core (_C.subst_positions) against its NumPy twin (pacofr/ref/masking.py):
sorted, distinct, in range, a pure function of (seed, step, sample index), uniform over
subsets, independent of the thread count, and every bad-argument path."""
import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr.ref import masking as ref


def _subst(seed, step, indices, n_keep, s):
    return _C.subst_positions(seed, step, np.asarray(indices, np.int64), n_keep, s)


@pytest.mark.parametrize("n_keep,s", [(49, 12), (49, 0), (49, 49), (1, 1), (0, 0), (196, 5), (3, 2)])
def test_subst_positions_match_twin_sorted_distinct_in_range(n_keep, s):
    idx = np.array([0, 5, 3, 1 << 40, -7], np.int64)
    for seed, step in ((0, 0), (3, 17), (2 ** 63 + 5, 2 ** 64 - 1)):
        got = _subst(seed, step, idx, n_keep, s)
        assert got.dtype == np.int64 and got.shape == (len(idx), s)
        np.testing.assert_array_equal(got, ref.subst_positions(seed, step, idx, n_keep, s))
        if s:
            assert (np.diff(got, axis=1) > 0).all()
            assert got.min() >= 0 and got.max() < n_keep


def test_subst_positions_pure_function_of_seed_step_index():
    idx = np.arange(64, dtype=np.int64) * 7
    a = _subst(5, 9, idx, 147, 20)
    np.testing.assert_array_equal(a, _subst(5, 9, idx, 147, 20))
    # the same sample index in another batch, at another place: the same row
    np.testing.assert_array_equal(_subst(5, 9, idx[[40, 2, 11]], 147, 20), a[[40, 2, 11]])
    assert len({row.tobytes() for row in a}) == 64
    for other in (_subst(5, 10, idx, 147, 20), _subst(6, 9, idx, 147, 20)):
        assert all(not np.array_equal(x, y) for x, y in zip(a, other))
    # its own stream: not the removed patches of the random mask of the same (seed, step, index)
    mask = _C.mask_sample("random", idx, 14, 147, 5, 9)[0]
    removed = np.stack([np.flatnonzero(row) for row in mask])
    assert not np.array_equal(_subst(5, 9, idx, 196, 147), removed)


def test_subst_positions_thread_count_does_not_change_them():
    idx = np.arange(64, dtype=np.int64)   # 64 x 196: past the parallel threshold
    before = pacofr.get_num_threads()
    try:
        pacofr.set_num_threads(1)
        one = _subst(3, 4, idx, 196, 30)
        pacofr.set_num_threads(2)
        two = _subst(3, 4, idx, 196, 30)
    finally:
        pacofr.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_subst_positions_are_uniform_over_subsets():
    from itertools import combinations
    n_keep, s, rows = 10, 3, 24000
    got = _subst(1, 2, np.arange(rows), n_keep, s)
    index = {c: i for i, c in enumerate(combinations(range(n_keep), s))}   # 120 subsets
    counts = np.bincount([index[tuple(r)] for r in got], minlength=len(index))
    expected = rows / len(index)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    dof = len(index) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof), chi2                    # about 1e-5 false alarms
    # every place equally likely, and over steps for one sample index too
    freq = np.bincount(got.ravel(), minlength=n_keep) / rows
    assert np.abs(freq - s / n_keep).max() < 5 * np.sqrt(0.3 * 0.7 / rows)
    steps = np.concatenate([_subst(1, t, np.array([7]), n_keep, s)[0] for t in range(3000)])
    freq = np.bincount(steps, minlength=n_keep) / 3000
    assert np.abs(freq - s / n_keep).max() < 5 * np.sqrt(0.3 * 0.7 / 3000)


def test_subst_positions_check_their_arguments():
    idx = np.arange(3, dtype=np.int64)
    with pytest.raises(ValueError, match=r"s must be in \[0, n_keep = 4\], got 5"):
        _C.subst_positions(0, 0, idx, 4, 5)
    with pytest.raises(ValueError, match=r"s must be in \[0, n_keep = 4\], got -1"):
        _C.subst_positions(0, 0, idx, 4, -1)
    with pytest.raises(ValueError, match=r"n_keep must be in \[0, 16777216\], got -2"):
        _C.subst_positions(0, 0, idx, -2, 0)
    with pytest.raises(ValueError, match=r"indices must be 1-D, got 2-D"):
        _C.subst_positions(0, 0, idx.reshape(1, 3), 4, 2)
    with pytest.raises(TypeError, match="indices must have dtype int64, got int32"):
        _C.subst_positions(0, 0, idx.astype(np.int32), 4, 2)
    with pytest.raises(TypeError, match="indices must be a numpy.ndarray of int64, got list"):
        _C.subst_positions(0, 0, [0, 1], 4, 2)
    with pytest.raises(ValueError, match="indices must be C-contiguous"):
        _C.subst_positions(0, 0, np.arange(6, dtype=np.int64)[::2], 4, 2)
    with pytest.raises(TypeError):
        _C.subst_positions(0, 0, idx, 4)   # s missing
    before = idx.copy()
    _C.subst_positions(0, 0, idx, 4, 2)
    np.testing.assert_array_equal(idx, before)
