"""PaCo-FR masking (docs/method.md section 1): the random / block / structured / facial masks, the C
core against its NumPy twin (pacofr/ref/masking.py), the kind registry (pacofr/masking.py) against
the C kind table and the twin, and every bad-argument path. The region
maps they follow: test_regions.py; substitution positions: test_subst_positions.py."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import pacofr
from pacofr import _C
from pacofr import masking as M
from pacofr import regions as R
from pacofr.data import SynthFace
from pacofr.data.schemes import CANONICAL_68, SCHEMES
from pacofr.ref import masking as ref

C = {name: i for i, name in enumerate(R.COMPONENTS)}
GRIDS = (1, 2, 4, 7, 14, 16)
RATIOS = (0.0, 0.1, 0.5, 0.75, 0.9)


@pytest.fixture(scope="module")
def synth():
    return SynthFace(seed=0, size=112).render_batch(range(4))


def n_mask_of(ratio, N):
    return int(round(ratio * N))


def masked_neighbours(mask, G):
    """(..., N) 0/1 -> (..., G, G) number of masked 4-neighbours of every patch."""
    m = np.asarray(mask, np.int64).reshape(-1, G, G)
    nb = np.zeros_like(m)
    nb[:, 1:] += m[:, :-1]
    nb[:, :-1] += m[:, 1:]
    nb[:, :, 1:] += m[:, :, :-1]
    nb[:, :, :-1] += m[:, :, 1:]
    return nb


def adjacency(mask, G):
    """Fraction of the masked patches' 4-neighbours that are masked."""
    m = np.asarray(mask, np.int64).reshape(-1, G, G)
    inside = masked_neighbours(np.ones_like(m), G)
    return (masked_neighbours(m, G) * m).sum() / (inside * m).sum()


def reachable(seeds, allowed, G):
    """Patches of `allowed` (N,) bool reachable from `seeds` (N,) bool by 4-steps inside allowed."""
    seen = (seeds & allowed).reshape(G, G).copy()
    allowed = allowed.reshape(G, G)
    while True:
        grow = seen.copy()
        grow[1:] |= seen[:-1]
        grow[:-1] |= seen[1:]
        grow[:, 1:] |= seen[:, :-1]
        grow[:, :-1] |= seen[:, 1:]
        grow &= allowed
        if (grow == seen).all():
            return seen.ravel()
        seen = grow


def check_structured(mask, regions, n_mask, G):
    """What a structured mask guarantees, from the mask alone. F = the components whose patches
    are all masked (the greedy pass's), T = the other masked patches (the top-up's). Asserts:
    |T| = n_mask - |F's patches| is smaller than every non-empty component outside F (each was
    skipped because it did not fit, and the top-up never fills one); with F non-empty every T
    patch is joined to F through masked patches (each was 4-adjacent to the mask when added);
    with F empty, T is one 4-connected blob grown from a random patch."""
    mask, regions = np.asarray(mask).astype(bool), np.asarray(regions)
    sizes = np.bincount(regions, minlength=13)
    full = [c for c in range(13) if sizes[c] and mask[regions == c].all()]
    in_full = np.isin(regions, full)
    topped = mask & ~in_full
    assert mask.sum() == n_mask
    others = [sizes[c] for c in range(13) if sizes[c] and c not in full]
    if others:
        assert topped.sum() < min(others), (topped.sum(), others)
    if full:
        assert reachable(in_full, mask, G)[topped].all()
    elif topped.any():
        start = np.zeros_like(topped)
        start[np.flatnonzero(topped)[0]] = True
        assert (reachable(start, topped, G) == topped).all()
    return topped.sum()


# ---------------------------------------------------------------- masks on landmark region maps

def test_maps_mirror_under_horizontal_flip(synth):
    rng = np.random.default_rng(5)
    S = 112
    lm = np.concatenate([synth["landmarks"], CANONICAL_68[None] * S - 0.5 + rng.normal(0, 1.5, (12, 68, 2))])
    flipped = SCHEMES["68"].flip_landmarks(lm, S - 1)
    swap = np.asarray(R.COMPONENT_FLIP)
    for G in (7, 14, 16):
        a = R.region_map_from_landmarks(lm, S, G)
        b = R.region_map_from_landmarks(flipped, S, G)
        want = swap[a.reshape(-1, G, G)[:, :, ::-1]].reshape(a.shape)
        np.testing.assert_array_equal(b, want)
        np.testing.assert_array_equal(R.flip_region_map(a, G), b)
        # structured masks on the flipped maps still cover whole components
        n_mask = n_mask_of(0.75, G * G)
        mask = M.make_masks("structured", len(b), G, 0.75, 3, 1, regions=b)[0]
        for row, reg in zip(mask, b):
            check_structured(row, reg, n_mask, G)


# ---------------------------------------------------------------- masks: counts and indices

@pytest.mark.parametrize("kind", M.KINDS)
@pytest.mark.parametrize("G", GRIDS)
def test_exact_counts_and_consistent_indices(kind, G):
    N = G * G
    for ratio in RATIOS:
        n_mask = n_mask_of(ratio, N)
        if n_mask >= N:   # nothing kept: an error (test_a_ratio_that_keeps_nothing_raises)
            continue
        mask, keep, restore = M.make_masks(kind, 6, G, ratio, seed=1, step=2)
        assert mask.dtype == np.uint8 and keep.dtype == np.int64 and restore.dtype == np.int64
        assert mask.shape == (6, N) and keep.shape == (6, N - n_mask) and restore.shape == (6, N)
        assert set(np.unique(mask)) <= {0, 1}
        assert (mask.sum(1) == n_mask).all()
        for m, k, r in zip(mask, keep, restore):
            np.testing.assert_array_equal(k, np.flatnonzero(m == 0))          # kept, ascending
            shuffle = np.concatenate([k, np.flatnonzero(m)])
            np.testing.assert_array_equal(shuffle[r], np.arange(N))           # MAE: ids_restore inverts
            np.testing.assert_array_equal(r, np.argsort(shuffle))
            assert (r[k] == np.arange(N - n_mask)).all() and (r[m == 1] >= N - n_mask).all()


def test_mae_gather_roundtrip():
    G, D = 14, 3
    x = np.random.default_rng(0).normal(size=(4, G * G, D))
    _, keep, restore = M.make_masks("structured", 4, G, 0.75, 0, 0)
    kept = np.take_along_axis(x, keep[..., None], 1)                      # the encoder's tokens
    full = np.concatenate([kept, np.full((4, restore.shape[1] - kept.shape[1], D), np.nan)], 1)
    back = np.take_along_axis(full, restore[..., None], 1)                # MAE's decoder unshuffle
    m = np.isnan(back[..., 0])
    np.testing.assert_array_equal(back[~m], x[~m])
    np.testing.assert_array_equal(m, M.make_masks("structured", 4, G, 0.75, 0, 0)[0] == 1)


def test_ratio_rounding_and_edges():
    assert M.num_masked(0.75, 196) == 147 and M.num_masked(0.75, 16) == 12
    with pytest.raises(ValueError, match="nothing would be kept"):   # round(0.6) = 1 = N (issue 13: was width 0)
        M.make_masks("random", 3, 1, 0.6, 0, 0)
    for kind in M.KINDS:
        mask, keep, restore = M.make_masks(kind, 0, 14, 0.75, 0, 0)
        assert mask.shape == (0, 196) and keep.shape == (0, 49) and restore.shape == (0, 196)
        mask, keep, _ = M.make_masks(kind, 2, 14, 0.0, 0, 0)
        assert not mask.any() and (keep == np.arange(196)).all()


# ---------------------------------------------------------------- masks: determinism

@pytest.mark.parametrize("kind", M.KINDS)
def test_rows_are_pure_functions_of_seed_step_index(kind):
    G = 14
    a = M.make_masks(kind, 8, G, 0.75, seed=5, step=9)
    b = M.make_masks(kind, 8, G, 0.75, seed=5, step=9)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # another batch with the same sample indices elsewhere: the same rows
    c = M.make_masks(kind, 3, G, 0.75, seed=5, step=9, indices=[7, 100, 2])
    for x, y in zip(a, c):
        np.testing.assert_array_equal(y[0], x[7])
        np.testing.assert_array_equal(y[2], x[2])
    # rows differ across indices, steps and seeds
    assert len({row.tobytes() for row in a[0]}) == 8
    for other in (M.make_masks(kind, 8, G, 0.75, seed=5, step=10), M.make_masks(kind, 8, G, 0.75, seed=6, step=9)):
        assert all(not np.array_equal(x, y) for x, y in zip(a[0], other[0]))
    # the three kinds draw different streams
    if kind != "random":
        assert not np.array_equal(a[0], M.make_masks("random", 8, G, 0.75, seed=5, step=9)[0])


def test_structured_row_depends_only_on_its_own_region_map(synth):
    maps = R.region_map_from_landmarks(synth["landmarks"], 112, 14)
    a = M.make_masks("structured", 4, 14, 0.75, 1, 2, regions=maps)[0]
    b = M.make_masks("structured", 2, 14, 0.75, 1, 2, regions=maps[[3, 1]], indices=[3, 1])[0]
    np.testing.assert_array_equal(b, a[[3, 1]])
    shared = M.make_masks("structured", 4, 14, 0.75, 1, 2, regions=maps[0])[0]
    np.testing.assert_array_equal(shared[0], a[0])
    default = M.make_masks("structured", 4, 14, 0.75, 1, 2)[0]
    np.testing.assert_array_equal(default, M.make_masks("structured", 4, 14, 0.75, 1, 2, regions=R.region_map(14))[0])


@pytest.mark.parametrize("kind", M.KINDS)
def test_thread_count_does_not_change_masks(kind):
    before = pacofr.get_num_threads()
    try:
        pacofr.set_num_threads(1)
        one = M.make_masks(kind, 64, 14, 0.75, 3, 4)   # 64 x 196 patches: past the parallel threshold
        pacofr.set_num_threads(2)
        two = M.make_masks(kind, 64, 14, 0.75, 3, 4)
    finally:
        pacofr.set_num_threads(before)
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- masks: what each kind is

@pytest.mark.parametrize("G,ratio", [(14, 0.75), (14, 0.5), (14, 0.3), (7, 0.75), (4, 0.75), (14, 0.05)])
def test_structured_masks_cover_whole_components(G, ratio):
    regions = R.region_map(G)
    n_mask = n_mask_of(ratio, G * G)
    mask = M.make_masks("structured", 200, G, ratio, seed=11, step=0)[0]
    for row in mask:
        check_structured(row, regions, n_mask, G)


def test_facial_masks_take_whole_facial_components_then_random_patches(synth):
    G, ratio = 14, 0.75
    n_mask = n_mask_of(ratio, G * G)
    hair = R.COMPONENTS.index("hair_background")
    maps = R.region_map_from_landmarks(synth["landmarks"], 112, G)
    for regions in (R.region_map(G), maps[0], maps[3]):
        facial = int((regions != hair).sum())
        sizes = np.bincount(regions, minlength=len(R.COMPONENTS))
        # a budget of exactly the facial patches: every facial component, nothing else
        if facial <= n_mask:
            rr = facial / n_mask
            mask = M.make_masks("facial", 8, G, ratio, 1, 2, regions=regions, region_ratio=rr)[0]
            assert (mask[:, regions != hair] == 1).all()
        # a small budget: one or a few whole components, then random patches, so that about the
        # masking ratio of the face is removed (not all of it, as structured masking does)
        mask = M.make_masks("facial", 200, G, ratio, 3, 4, regions=regions, region_ratio=0.15)[0]
        whole = np.array([[sizes[c] > 0 and row[regions == c].all() for c in range(hair)] for row in mask])
        assert whole.any(1).all()
        assert 0.7 < mask[:, regions != hair].mean() < 0.9
        # region_ratio 0: uniform random patches (each patch removed with probability ratio)
        mask = M.make_masks("facial", 400, G, ratio, 5, 6, regions=regions, region_ratio=0.0)[0]
        assert abs(mask.mean(0) - n_mask / G ** 2).max() < 0.1
    with pytest.raises(ValueError, match=r"region_ratio must be in \[0, 1\]"):
        M.make_masks("facial", 2, G, ratio, 0, 0, region_ratio=1.5)
    with pytest.raises(ValueError, match="n_region"):
        _C.mask_sample("facial", np.arange(2), G, n_mask, 0, 0, R.region_map(G), n_mask + 1)


def test_structured_top_up_follows_the_rule():
    """In the twin, step by step: the greedy pass keeps whole components while they fit, skips
    the others; each top-up patch had the most masked 4-neighbours (at least one) of all
    unmasked patches when it was added."""
    G, regions = 14, R.region_map(14)
    sizes = np.bincount(regions, minlength=13)
    for step in range(40):
        n_mask = n_mask_of(0.75, G * G)
        s = ref.Stream("structured", 0, step, 0)
        mask, taken, skipped = ref.structured_components(regions, n_mask, s)
        assert sizes[taken].sum() == mask.sum() <= n_mask
        assert all(sizes[c] > n_mask - mask.sum() for c in skipped)
        assert sorted(taken + skipped) == [c for c in range(13) if sizes[c]]
        state = mask.copy()
        for patch in ref.top_up(mask, G, n_mask, s):
            nb = masked_neighbours(state, G).ravel()
            assert state[patch] == 0 and nb[patch] >= 1 and nb[patch] == nb[state == 0].max()
            state[patch] = 1
        np.testing.assert_array_equal(mask, M.make_masks("structured", 1, G, 0.75, 0, step)[0][0])


def test_top_up_from_nothing_grows_one_blob():
    # one component of 196 patches never fits n_mask = round(0.01 * 196) = 2: the top-up starts
    # from a random patch and grows from it
    G = 14
    mask = M.make_masks("structured", 50, G, 0.01, 0, 0, regions=np.full(196, 12))[0]
    for row in mask:
        check_structured(row, np.full(196, 12), 2, G)
        assert masked_neighbours(row, G).ravel()[row == 1].min() >= 1   # the two patches touch
    assert len({row.tobytes() for row in mask}) > 10                   # from random starts


@pytest.mark.parametrize("G,ratio", [(14, 0.75), (4, 0.5)])
def test_random_masks_are_uniform(G, ratio):
    rows = 4000
    mask = M.make_masks("random", rows, G, ratio, seed=0, step=3)[0]
    freq = mask.mean(0)
    sigma = np.sqrt(ratio * (1 - ratio) / rows)
    assert np.abs(freq - ratio).max() < 5 * sigma, np.abs(freq - ratio).max() / sigma
    # and over steps for one sample index
    steps = np.stack([M.make_masks("random", 1, G, ratio, seed=0, step=s)[0][0] for s in range(1000)])
    assert np.abs(steps.mean(0) - ratio).max() < 5 * np.sqrt(ratio * (1 - ratio) / 1000)
    # no spatial structure: a masked patch's neighbour is masked with probability (n - 1) / (N - 1)
    n, N = n_mask_of(ratio, G * G), G * G
    assert abs(adjacency(mask, G) - (n - 1) / (N - 1)) < 0.02


def test_block_masks_are_rectangles_and_coherent():
    G = 14
    for ratio in (0.4, 0.75):
        n_mask = n_mask_of(ratio, G * G)
        topped = []
        for step in range(100):
            s = ref.Stream("block", 0, step, 0)
            rects_mask, rects = ref.block_rects(G, n_mask, s)
            union = np.zeros((G, G), np.uint8)
            for top, left, h, w in rects:
                assert 0 <= top and top + h <= G and 0 <= left and left + w <= G
                union[top:top + h, left:left + w] = 1
            np.testing.assert_array_equal(union, rects_mask)
            topped.append(n_mask - int(rects_mask.sum()))
            full = M.make_masks("block", 1, G, ratio, 0, step)[0][0].reshape(G, G)
            assert (full >= rects_mask).all()             # the top-up only adds
        assert np.mean(topped) < 0.05 * n_mask            # mostly rectangles
        block = M.make_masks("block", 300, G, ratio, 1, 0)[0]
        random = M.make_masks("random", 300, G, ratio, 1, 0)[0]
        assert adjacency(block, G) > adjacency(random, G) + 0.15
    # BEiT's smallest block: round(0.08 N) patches, at most 16, at least 1
    assert [max(1, min(16, (8 * G * G + 50) // 100)) for G in (2, 4, 7, 14, 28)] == [1, 1, 4, 16, 16]


# ---------------------------------------------------------------- the NumPy twin

@pytest.mark.parametrize("kind", M.KINDS)
def test_twin_matches_c_bit_for_bit(kind, synth):
    for G in (1, 2, 4, 7, 14):
        for ratio in RATIOS:
            if n_mask_of(ratio, G * G) >= G * G:
                continue
            idx = [0, 5, -3, 2 ** 40, 123456789]
            regions = R.region_map(G)
            got = M.make_masks(kind, 5, G, ratio, 2 ** 63 + 5, 17, indices=idx)
            want = ref.make_masks(kind, 5, G, ratio, 2 ** 63 + 5, 17, regions=regions, indices=idx)
            for x, y in zip(got, want):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
    maps = R.region_map_from_landmarks(synth["landmarks"], 112, 14)
    got = M.make_masks(kind, 4, 14, 0.75, 7, 7, regions=maps)
    want = ref.make_masks(kind, 4, 14, 0.75, 7, 7, regions=maps)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(M.KINDS), G=st.integers(1, 9), ratio=st.floats(0, 0.99),
       seed=st.integers(-2 ** 63, 2 ** 64 - 1), step=st.integers(0, 2 ** 40), B=st.integers(0, 3),
       data=st.data())
def test_twin_and_invariants_property(kind, G, ratio, seed, step, B, data):
    N = G * G
    assume(n_mask_of(ratio, N) < N)   # keeping nothing raises (test_a_ratio_that_keeps_nothing_raises)
    regions = np.array(data.draw(st.lists(st.integers(0, 12), min_size=B * N, max_size=B * N)),
                       np.int64).reshape(B, N)
    indices = np.array(data.draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), min_size=B, max_size=B)), np.int64)
    got = M.make_masks(kind, B, G, ratio, seed, step, regions=regions, indices=indices)
    want = ref.make_masks(kind, B, G, ratio, seed, step, regions=regions, indices=indices)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)
    n_mask = n_mask_of(ratio, N)
    assert (got[0].sum(1) == n_mask).all()
    if kind == "structured":
        for row, reg in zip(got[0], regions):
            check_structured(row, reg, n_mask, G)


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs,error,message", [
    (dict(kind="grid"), ValueError, "kind must be one of 'random', 'block', 'structured', 'facial', got 'grid'"),
    (dict(ratio=1.0), ValueError, r"ratio must be in \[0, 1\), got 1.0"),
    (dict(ratio=-0.1), ValueError, r"ratio must be in \[0, 1\), got -0.1"),
    (dict(ratio=float("nan")), ValueError, r"ratio must be in \[0, 1\)"),
    (dict(ratio="half"), TypeError, "ratio must be a number"),
    (dict(grid=0), ValueError, r"grid must be in \[1, 4096\], got 0"),
    (dict(grid=-3), ValueError, r"grid must be in \[1, 4096\], got -3"),
    (dict(grid=2.5), TypeError, "grid must be an integer, got float"),
    (dict(batch_size=-1), ValueError, "batch_size must be >= 0, got -1"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an integer"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(step=None), TypeError, "step must be an integer"),
    (dict(regions=np.zeros(197, np.int64)), ValueError,
     r"regions must have shape \(196,\) .* or \(2, 196\) .*got \(197,\)"),
    (dict(regions=np.zeros((3, 196), np.int64)), ValueError, r"got \(3, 196\)"),
    (dict(regions=np.zeros((2, 196, 1), np.int64)), ValueError, r"got \(2, 196, 1\)"),
    (dict(regions=np.full(196, 13)), ValueError, r"component ids in \[0, 13\), got 13"),
    (dict(regions=np.full((2, 196), -1)), ValueError, r"component ids in \[0, 13\), got -1"),
    (dict(regions=np.zeros(196, np.float32)), ValueError, "regions must hold integers, got dtype float32"),
    (dict(kind="random", regions=np.full(196, 13)), ValueError, "component ids"),
    (dict(indices=np.arange(3)), ValueError, r"indices must have shape \(2,\), got \(3,\)"),
    (dict(indices=np.zeros(2, np.float64)), ValueError, "indices must hold integers, got dtype float64"),
])
def test_make_masks_bad_arguments(kwargs, error, message):
    args = dict(kind="structured", batch_size=2, grid=14, ratio=0.75, seed=0, step=0)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        M.make_masks(**args)


def test_c_bindings_check_their_arguments():
    idx = np.arange(2, dtype=np.int64)
    reg = np.zeros(16, np.int64)
    with pytest.raises(TypeError, match="indices must have dtype int64, got int32"):
        _C.mask_sample("random", idx.astype(np.int32), 4, 3, 0, 0)
    with pytest.raises(TypeError, match="indices must be a numpy.ndarray of int64, got list"):
        _C.mask_sample("block", [0, 1], 4, 3, 0, 0)
    with pytest.raises(ValueError, match=r"indices must be 1-D, got 2-D"):
        _C.mask_sample("random", idx.reshape(1, 2), 4, 3, 0, 0)
    with pytest.raises(ValueError, match="indices must be C-contiguous"):
        _C.mask_sample("random", np.arange(4, dtype=np.int64)[::2], 4, 3, 0, 0)
    with pytest.raises(ValueError, match=r"grid must be in \[1, 4096\], got 0"):
        _C.mask_sample("block", idx, 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"n_mask must be in \[0, N = 16\], got 17"):
        _C.mask_sample("random", idx, 4, 17, 0, 0)
    with pytest.raises(ValueError, match=r"n_mask must be in \[0, N = 16\], got -1"):
        _C.mask_sample("structured", idx, 4, -1, 0, 0, reg)
    with pytest.raises(ValueError, match=r"regions must have shape \(16,\) or \(2, 16\), got \(15,\)"):
        _C.mask_sample("structured", idx, 4, 3, 0, 0, reg[:15])
    with pytest.raises(TypeError, match="regions must have dtype int64"):
        _C.mask_sample("structured", idx, 4, 3, 0, 0, reg.astype(np.uint8))
    bad = reg.copy()
    bad[7] = 13
    with pytest.raises(ValueError, match=r"regions \(flat index 7\) holds 13, outside the component ids \[0, 13\)"):
        _C.mask_sample("structured", idx, 4, 3, 0, 0, bad)
    with pytest.raises(ValueError, match=r"mask_sample\(structured\): this kind needs a region map, got none"):
        _C.mask_sample("structured", idx, 4, 3, 0, 0)   # regions missing


# ---------------------------------------------------------------- the kind registry

def test_registry_c_kinds_and_twin_kinds_agree():
    """pacofr/masking.py's registry is the one list in Python; the C kind table (its enum order)
    and the twin's rows name exactly the same kinds, in the same order."""
    assert M.KINDS == tuple(k.name for k in M.REGISTRY) == _C.mask_kinds() == ref.KINDS == tuple(ref.ROWS)
    assert set(ref.SALTS) == set(M.KINDS) | {"subst"}
    assert M.NEEDS_REGIONS == {k.name for k in M.REGISTRY if k.needs_regions} == {"structured", "facial"}
    assert [M.needs_regions(k) for k in M.KINDS] == [k in M.NEEDS_REGIONS for k in M.KINDS]
    from pacofr.cli import build_parser
    from pacofr.train.config import MASKINGS
    assert MASKINGS is M.KINDS
    pre = build_parser()._subparsers._group_actions[0].choices["pretrain"]
    assert tuple(next(a for a in pre._actions if a.dest == "masking").choices) == M.KINDS


@pytest.mark.parametrize("kind", M.KINDS)
def test_c_needs_regions_as_the_registry_says_and_takes_ids(kind):
    """The C kind table's "reads a region map" agrees with the registry's: without regions the
    kinds of NEEDS_REGIONS are a ValueError at _C.mask_sample, the others draw (and ignore any
    regions given). A kind's id (its place in mask_kinds()) draws what its name draws."""
    idx, reg = np.arange(3, dtype=np.int64), R.region_map(4)
    if M.needs_regions(kind):
        with pytest.raises(ValueError, match=rf"mask_sample\({kind}\): this kind needs a region map, got none"):
            _C.mask_sample(kind, idx, 4, 5, 1, 2)
    else:
        for x, y in zip(_C.mask_sample(kind, idx, 4, 5, 1, 2), _C.mask_sample(kind, idx, 4, 5, 1, 2, reg)):
            np.testing.assert_array_equal(x, y)
    by_name = _C.mask_sample(kind, idx, 4, 5, 1, 2, reg, 2)
    by_id = _C.mask_sample(_C.mask_kinds().index(kind), idx, 4, 5, 1, 2, reg, 2)
    for x, y in zip(by_name, by_id):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(by_name[0], ref.make_masks(kind, 3, 4, 5 / 16, 1, 2, regions=reg,
                                                             region_ratio=0.4)[0])
    with pytest.raises(ValueError, match=r"n_region must be in \[0, n_mask = 5\], got 6"):
        _C.mask_sample(kind, idx, 4, 5, 1, 2, reg, 6)


@pytest.mark.parametrize("kind", ["grid", "Random", "", 3, None, b"random"])
def test_unknown_kind_is_a_value_error_at_make_masks(kind):
    with pytest.raises(ValueError, match="kind must be one of 'random', 'block', 'structured', 'facial', got"):
        M.make_masks(kind, 2, 4, 0.5, 0, 0)
    with pytest.raises(ValueError, match="kind must be one of"):
        M.needs_regions(kind)


def test_unknown_kind_is_a_value_error_at_the_c_entry_point():
    idx = np.arange(2, dtype=np.int64)
    with pytest.raises(ValueError, match="kind must be one of 'random', 'block', 'structured', 'facial', got 'grid'"):
        _C.mask_sample("grid", idx, 4, 3, 0, 0)
    for bad in (len(_C.mask_kinds()), -1, 2 ** 31, -2 ** 70):   # ids: pf_mask_sample's own check
        with pytest.raises(ValueError, match=rf"mask_sample: unknown masking kind -?\d+ \(kinds are 0\.\.3\)"):
            _C.mask_sample(bad, idx, 4, 3, 0, 0)
    for bad in (None, 1.0, True, b"random"):
        with pytest.raises(TypeError, match="kind must be a kind name"):
            _C.mask_sample(bad, idx, 4, 3, 0, 0)


def test_inputs_untouched_and_memory_flat():
    import resource
    regions = np.ascontiguousarray(np.tile(R.region_map(14), (64, 1)))
    before = regions.copy()
    idx = np.arange(64, dtype=np.int64) * 3
    M.make_masks("structured", 64, 14, 0.75, 0, 0, regions=regions, indices=idx)
    np.testing.assert_array_equal(regions, before)
    np.testing.assert_array_equal(idx, np.arange(64) * 3)

    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024

    for kind in M.KINDS:   # warm up allocator pools
        M.make_masks(kind, 64, 14, 0.75, 0, 0, regions=regions)
    start = rss_kb()
    for step in range(1500):
        for kind in M.KINDS:
            M.make_masks(kind, 64, 14, 0.75, 0, step, regions=regions)
    # a leak of the outputs alone would be 1500 * 3 * 64 * 196 * 17 bytes, about 960 MB
    assert rss_kb() - start < 20_000


@pytest.mark.parametrize("kind", M.KINDS)
def test_a_ratio_that_keeps_nothing_raises(kind):
    """Issue 13: a ratio rounding to every patch removed gave a width-0 ids_keep."""
    with pytest.raises(ValueError, match=r"ratio 0.9 removes round\(0.9 x 4\) = 4 of the 4 patches: nothing"):
        M.make_masks(kind, 3, 2, 0.9, seed=0, step=0)
    with pytest.raises(TypeError, match="ratio must be a number, got str '0.5'"):
        M.make_masks(kind, 3, 2, "0.5", seed=0, step=0)
