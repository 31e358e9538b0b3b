"""NumPy twin of csrc/paco/masking.c: the same counter-based draws, in the same order, so that its
masks and substitution positions equal the C core's bit for bit. Slow (a Python loop per patch);
for tests and reading.

Per image: a splitmix64 stream keyed by mix64(mix64(mix64(seed ^ salt) ^ step) ^ index),
draw j = mix64(key + j * GOLDEN) (64-bit wrap-around). Integers in [0, n) take the high 64
bits of draw * n; unit doubles the top 53 bits of a draw."""
import math

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SALTS = {"random": 0x52414E444F4D4D4B, "block": 0x424C4F434B4D534B, "structured": 0x5354525543544D4B,
         "facial": 0x464143494D41534B, "subst": 0x5355425354504F53}
NUM_COMPONENTS = 13
BLOCK_ATTEMPTS = 10
BLOCK_MIN_ASPECT = 0.3


def mix64(z):
    """csrc/core/common.h pf_mix64 (splitmix64's finaliser) on a Python int."""
    z = (z + GOLDEN) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Stream:
    def __init__(self, kind, seed, step, index):
        self.key = mix64(mix64(mix64((seed & M64) ^ SALTS[kind]) ^ (step & M64)) ^ (index & M64))
        self.n = 0

    def next64(self):
        v = mix64((self.key + self.n * GOLDEN) & M64)
        self.n += 1
        return v

    def below(self, n):
        return (self.next64() * n) >> 64

    def unit(self):
        return (self.next64() >> 11) * 2.0 ** -53


def random_row(N, n_mask, s):
    """(N,) uint8 with n_mask ones: a partial Fisher-Yates shuffle of 0..N-1."""
    mask, perm = np.zeros(N, np.uint8), list(range(N))
    for j in range(n_mask):
        r = j + s.below(N - j)
        perm[r], perm[j] = perm[j], perm[r]
        mask[perm[j]] = 1
    return mask


def block_rects(G, n_mask, s):
    """BEiT's rectangles on a zeroed (G, G) mask -> (mask (G, G) uint8, [(top, left, h, w)])."""
    mask = np.zeros((G, G), np.uint8)
    min_patches = max(1, min(16, (8 * G * G + 50) // 100))
    log_lo = math.log(BLOCK_MIN_ASPECT)
    count, fails, rects = 0, 0, []
    while count < n_mask and fails < BLOCK_ATTEMPTS:
        remaining = n_mask - count
        area = float(min_patches) + s.unit() * float(remaining - min_patches)
        aspect = math.exp(log_lo + s.unit() * (-2.0 * log_lo))
        h = max(1, int(math.floor(math.sqrt(area * aspect) + 0.5)))
        w = max(1, int(math.floor(math.sqrt(area / aspect) + 0.5)))
        fresh = 0
        if h <= G and w <= G:
            top, left = s.below(G - h + 1), s.below(G - w + 1)
            fresh = int((mask[top:top + h, left:left + w] == 0).sum())
        if fresh < 1 or fresh > remaining:
            fails += 1
            continue
        mask[top:top + h, left:left + w] = 1
        rects.append((top, left, h, w))
        count += fresh
        fails = 0
    return mask, rects


def structured_components(regions, n_mask, s, skip=-1):
    """Whole components in a random order while the count stays <= n_mask (never ``skip``) ->
    (mask (N,) uint8, masked components, skipped non-empty components)."""
    regions = np.asarray(regions)
    size = np.bincount(regions, minlength=NUM_COMPONENTS)
    order = list(range(NUM_COMPONENTS))
    for c in range(NUM_COMPONENTS - 1, 0, -1):
        j = s.below(c + 1)
        order[c], order[j] = order[j], order[c]
    mask, count, taken, skipped = np.zeros(regions.size, np.uint8), 0, [], []
    for c in order:
        if size[c] == 0 or c == skip:
            continue
        if count + size[c] > n_mask:
            skipped.append(c)
            continue
        mask[regions == c] = 1
        count += int(size[c])
        taken.append(c)
    return mask, taken, skipped


def top_up(mask, G, n_mask, s):
    """Grow mask (N,) to n_mask ones in place: each time, the unmasked patches with the most
    masked 4-neighbours, one at random. Returns the added patches in order."""
    m = mask.reshape(G, G)
    added = []
    while int(mask.sum()) < n_mask:
        pad = np.pad(m, 1)
        score = pad[:-2, 1:-1].astype(int) + pad[2:, 1:-1] + pad[1:-1, :-2] + pad[1:-1, 2:]
        score = np.where(m == 0, score, -1).ravel()
        cand = np.flatnonzero(score == score.max())
        pick = int(cand[s.below(cand.size)])
        mask[pick] = 1
        added.append(pick)
    return added


def facial_row(regions, n_region, n_mask, s):
    """Whole facial components (never hair/background) while the count stays <= n_region,
    then a partial Fisher-Yates shuffle of the unmasked patches up to n_mask."""
    mask = structured_components(regions, n_region, s, skip=NUM_COMPONENTS - 1)[0]
    perm = list(np.flatnonzero(mask == 0))
    for j in range(n_mask - int(mask.sum())):
        r = j + s.below(len(perm) - j)
        perm[r], perm[j] = perm[j], perm[r]
        mask[perm[j]] = 1
    return mask


# ---- one row per kind: (G, n_mask, stream, regions (N,) or None, n_region) -> (G * G,) uint8, as
# the row functions of csrc/paco/masking.c's kind table

def random_mask(G, n_mask, s, regions, n_region):
    """MAE: a uniform random subset."""
    return random_row(G * G, n_mask, s)


def block_mask(G, n_mask, s, regions, n_region):
    """BEiT's rectangles, then the top-up."""
    mask = block_rects(G, n_mask, s)[0].ravel()
    top_up(mask, G, n_mask, s)
    return mask


def structured_mask(G, n_mask, s, regions, n_region):
    """Whole components of the region map, then the top-up."""
    mask = structured_components(regions, n_mask, s)[0]
    top_up(mask, G, n_mask, s)
    return mask


def facial_mask(G, n_mask, s, regions, n_region):
    """Whole facial components up to n_region patches, then random ones."""
    return facial_row(regions, n_region, n_mask, s)


# the kinds, in the C core's order (tests/test_masking.py pins the agreement); their salts: SALTS
ROWS = {"random": random_mask, "block": block_mask, "structured": structured_mask, "facial": facial_mask}
KINDS = tuple(ROWS)


def mask_row(kind, G, n_mask, seed, step, index, regions=None, n_region=0):
    """One image's mask (G * G,) uint8."""
    return ROWS[kind](G, n_mask, Stream(kind, seed, step, index), regions, n_region)


def make_masks(kind, batch_size, grid, ratio, seed, step, regions=None, indices=None, region_ratio=0.5):
    """pacofr.masking.make_masks in NumPy (``regions`` must be given for the kinds that read a
    region map, ``structured`` and ``facial``; the others ignore it)."""
    N = grid * grid
    n_mask = int(round(float(ratio) * N))
    n_region = int(round(float(region_ratio) * n_mask))
    indices = np.arange(batch_size) if indices is None else np.asarray(indices)
    if regions is not None:
        regions = np.broadcast_to(np.asarray(regions, np.int64), (batch_size, N))
    mask = np.zeros((batch_size, N), np.uint8)
    for b in range(batch_size):
        mask[b] = mask_row(kind, grid, n_mask, seed, step, int(indices[b]), None if regions is None else regions[b],
                           n_region)
    ids_shuffle = np.argsort(mask, axis=1, kind="stable")   # kept ascending, then removed ascending
    ids_restore = np.argsort(ids_shuffle, axis=1)
    return mask, ids_shuffle[:, :N - n_mask], ids_restore


def subst_positions(seed, step, indices, n_keep, s):
    """_C.subst_positions in NumPy: (B, s) int64, row b = s distinct places in [0, n_keep), ascending,
    drawn like a random mask of s among n_keep (a partial Fisher-Yates shuffle) from the stream of
    (seed, step, indices[b]) under the "subst" salt."""
    indices = np.asarray(indices, np.int64)
    out = np.empty((indices.size, s), np.int64)
    for b, index in enumerate(indices):
        out[b] = np.flatnonzero(random_row(n_keep, s, Stream("subst", seed, step, int(index))))
    return out
