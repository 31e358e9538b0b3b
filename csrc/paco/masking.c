/* masking.c: PaCo-FR patch masks (docs/method.md section 1): one row function per kind, a kind
 * table (name, salt, whether it reads a region map, row function) and one batch driver behind
 * pf_mask_sample. A new kind is a pf_mask_kind entry (masking.h), a row function and a table row.
 *
 * Randomness is counter-based: image b draws from a splitmix64 stream keyed by a hash of
 * (kind, seed, step, indices[b]), so a row never depends on its batch neighbours or on the
 * thread count. The PaCo-FR substitution positions (pf_subst_positions) draw from the same
 * kind of stream under their own salt. pacofr/ref/masking.py is the NumPy twin; it follows this
 * file draw for draw.
 *
 * Floating point is used only for the block sizes (BEiT's area and log-uniform aspect ratio);
 * contraction into FMA is switched off so that the twin's IEEE arithmetic matches bit for bit
 * on any -march. */
#pragma GCC optimize("fp-contract=off")
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "paco/masking.h"

#define GOLDEN 0x9E3779B97F4A7C15ull
/* kind salts, so that the kinds draw different streams from one (seed, step, index) */
#define SALT_RANDOM 0x52414E444F4D4D4Bull
#define SALT_BLOCK 0x424C4F434B4D534Bull
#define SALT_STRUCTURED 0x5354525543544D4Bull
#define SALT_FACIAL 0x464143494D41534Bull   /* "FACIMASK" */
#define HAIR_BACKGROUND (PF_NUM_COMPONENTS - 1)
/* and the substitution positions their own stream (ASCII "SUBSTPOS") */
#define SALT_SUBST 0x5355425354504F53ull
#define BLOCK_ATTEMPTS 10   /* failed rectangle draws in a row before the top-up takes over */
#define BLOCK_MIN_ASPECT 0.3

/* ---------------------------------------------------------------- counter-based stream */

typedef struct {
    uint64_t key, n;
} stream;

/* The stream of one row: key = mix(mix(mix(seed ^ salt) ^ step) ^ index), counter 0. */
static stream stream_for(uint64_t salt, uint64_t seed, uint64_t step, int64_t index) {
    stream s = {pf_mix64(pf_mix64(pf_mix64(seed ^ salt) ^ step) ^ (uint64_t)index), 0};
    return s;
}

/* The next 64 random bits: splitmix64's output sequence from state `key`. */
static inline uint64_t next64(stream *s) { return pf_mix64(s->key + (s->n++) * GOLDEN); }

/* Uniform integer in [0, n), n >= 1: the high 64 bits of a 64 x 64-bit product. */
static inline int64_t below(stream *s, int64_t n) {
    return (int64_t)(((unsigned __int128)next64(s) * (uint64_t)n) >> 64);
}

/* Uniform double in [0, 1) with 53 random bits. */
static inline double unit(stream *s) { return (double)(next64(s) >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------- shared row steps */

/* mask (N) -> ids_keep (N - n_mask): kept patches ascending; ids_restore (N): each patch's
 * position in ids_shuffle = [kept ascending, removed ascending]. */
static void row_ids(const uint8_t *mask, int64_t N, int64_t n_mask, int64_t *ids_keep, int64_t *ids_restore) {
    int64_t kept = 0, removed = N - n_mask;
    for (int64_t i = 0; i < N; i++) {
        if (mask[i]) {
            ids_restore[i] = removed++;
        } else {
            ids_keep[kept] = i;
            ids_restore[i] = kept++;
        }
    }
}

/* Masked 4-neighbours of patch i = (y, x) on the G x G grid. */
static inline int masked_neighbours(const uint8_t *mask, int64_t G, int64_t y, int64_t x) {
    const int64_t i = y * G + x;
    return (y > 0 && mask[i - G]) + (y + 1 < G && mask[i + G]) + (x > 0 && mask[i - 1]) +
           (x + 1 < G && mask[i + 1]);
}

/* mask (G, G) holding `count` ones -> exactly n_mask ones, one patch at a time: among the
 * unmasked patches, those with the most masked 4-neighbours win, uniformly at random among
 * ties. With nothing masked yet (or, on a connected grid never, no unmasked patch touching the
 * mask) every unmasked patch ties at 0: the growth starts from a random patch.
 * cand: scratch of N int64. */
static void top_up(uint8_t *mask, int64_t G, int64_t count, int64_t n_mask, stream *s, int64_t *cand) {
    for (; count < n_mask; count++) {
        int64_t m = 0;
        int best = -1;
        for (int64_t y = 0; y < G; y++)
            for (int64_t x = 0; x < G; x++) {
                if (mask[y * G + x]) continue;
                const int k = masked_neighbours(mask, G, y, x);
                if (k > best) best = k, m = 0;
                if (k == best) cand[m++] = y * G + x;
            }
        mask[cand[below(s, m)]] = 1;
    }
}

/* ---------------------------------------------------------------- one row per kind */

/* mask (N) zeroed -> n_mask ones on a uniform random subset (MAE): a partial Fisher-Yates
 * shuffle of 0..N-1. perm: scratch of N int64. */
static void random_row(uint8_t *mask, int64_t N, int64_t n_mask, stream *s, int64_t *perm) {
    for (int64_t i = 0; i < N; i++) perm[i] = i;
    for (int64_t j = 0; j < n_mask; j++) {
        const int64_t r = j + below(s, N - j), t = perm[r];
        perm[r] = perm[j], perm[j] = t;
        mask[t] = 1;
    }
}

/* mask (G, G) zeroed -> BEiT block-wise rectangles, returns how many patches they cover
 * (<= n_mask). A rectangle has area uniform in [min_patches, remaining] and aspect ratio
 * log-uniform in [0.3, 1/0.3]; it is kept only when it adds between 1 and `remaining` new
 * patches; BLOCK_ATTEMPTS failed draws in a row end the search. */
static int64_t block_rects(uint8_t *mask, int64_t G, int64_t n_mask, stream *s) {
    const int64_t min_patches = pf_max64(1, pf_min64(16, (8 * G * G + 50) / 100)); /* round(0.08 N) */
    const double log_lo = log(BLOCK_MIN_ASPECT);
    int64_t count = 0;
    for (int fails = 0; count < n_mask && fails < BLOCK_ATTEMPTS;) {
        const int64_t remaining = n_mask - count;
        const double area = (double)min_patches + unit(s) * (double)(remaining - min_patches);
        const double aspect = exp(log_lo + unit(s) * (-2.0 * log_lo));
        const int64_t h = pf_max64(1, (int64_t)floor(sqrt(area * aspect) + 0.5));
        const int64_t w = pf_max64(1, (int64_t)floor(sqrt(area / aspect) + 0.5));
        int64_t fresh = 0, top = 0, left = 0;
        if (h <= G && w <= G) {
            top = below(s, G - h + 1), left = below(s, G - w + 1);
            for (int64_t y = top; y < top + h; y++)
                for (int64_t x = left; x < left + w; x++) fresh += !mask[y * G + x];
        }
        if (fresh < 1 || fresh > remaining) {
            fails++;
            continue;
        }
        for (int64_t y = top; y < top + h; y++) memset(mask + y * G + left, 1, (size_t)w);
        count += fresh, fails = 0;
    }
    return count;
}

/* mask (N) zeroed, regions (N) -> whole components: the components in a random order, each
 * masked entirely when the masked count stays <= n_mask, skipped otherwise; component `skip`
 * (-1: none) never. Returns the masked count. */
static int64_t structured_components(uint8_t *mask, const int64_t *regions, int64_t N, int64_t n_mask,
                                     stream *s, int skip) {
    int64_t size[PF_NUM_COMPONENTS] = {0};
    int order[PF_NUM_COMPONENTS];
    for (int64_t i = 0; i < N; i++) size[regions[i]]++;
    for (int c = 0; c < PF_NUM_COMPONENTS; c++) order[c] = c;
    for (int c = PF_NUM_COMPONENTS - 1; c > 0; c--) { /* Fisher-Yates */
        const int j = (int)below(s, c + 1), t = order[c];
        order[c] = order[j], order[j] = t;
    }
    int64_t count = 0;
    for (int k = 0; k < PF_NUM_COMPONENTS; k++) {
        const int c = order[k];
        if (c == skip || size[c] == 0 || count + size[c] > n_mask) continue;
        for (int64_t i = 0; i < N; i++)
            if (regions[i] == c) mask[i] = 1;
        count += size[c];
    }
    return count;
}

/* mask (N) zeroed, regions (N) -> whole facial components (all but hair/background) while
 * the count stays <= n_region, then uniformly random patches among the unmasked ones up to
 * n_mask (a partial Fisher-Yates shuffle of them). perm: scratch of N int64. */
static void facial_row(uint8_t *mask, const int64_t *regions, int64_t N, int64_t n_region, int64_t n_mask,
                       stream *s, int64_t *perm) {
    const int64_t count = structured_components(mask, regions, N, n_region, s, HAIR_BACKGROUND);
    int64_t m = 0;
    for (int64_t i = 0; i < N; i++)
        if (!mask[i]) perm[m++] = i;
    for (int64_t j = 0; j < n_mask - count; j++) {
        const int64_t r = j + below(s, m - j), t = perm[r];
        perm[r] = perm[j], perm[j] = t;
        mask[t] = 1;
    }
}

/* ---------------------------------------------------------------- the kinds */

/* One row's inputs: the G x G grid (N = G * G), the budgets and the row's region map (N), or NULL
 * for a kind that reads none. */
typedef struct {
    int64_t G, N, n_mask, n_region;
    const int64_t *regions;
} row_args;

/* mask (N) zeroed -> exactly n_mask ones, drawn from s; tmp: scratch of N int64. */
typedef void (*row_fn)(uint8_t *mask, const row_args *a, stream *s, int64_t *tmp);

/* MAE: a uniform random subset. */
static void random_mask(uint8_t *mask, const row_args *a, stream *s, int64_t *tmp) {
    random_row(mask, a->N, a->n_mask, s, tmp);
}

/* BEiT's rectangles, then the top-up. */
static void block_mask(uint8_t *mask, const row_args *a, stream *s, int64_t *tmp) {
    top_up(mask, a->G, block_rects(mask, a->G, a->n_mask, s), a->n_mask, s, tmp);
}

/* Whole components of the region map, then the top-up. */
static void structured_mask(uint8_t *mask, const row_args *a, stream *s, int64_t *tmp) {
    const int64_t count = structured_components(mask, a->regions, a->N, a->n_mask, s, -1);
    top_up(mask, a->G, count, a->n_mask, s, tmp);
}

/* Whole facial components up to n_region patches, then random ones. */
static void facial_mask(uint8_t *mask, const row_args *a, stream *s, int64_t *tmp) {
    facial_row(mask, a->regions, a->N, a->n_region, a->n_mask, s, tmp);
}

/* The kind table, indexed by pf_mask_kind: its names are pacofr.masking.KINDS in order. */
static const struct {
    const char *name;
    uint64_t salt;
    int needs_regions;
    row_fn row;
} KINDS[PF_MASK_NUM_KINDS] = {
    [PF_MASK_RANDOM] = {"random", SALT_RANDOM, 0, random_mask},
    [PF_MASK_BLOCK] = {"block", SALT_BLOCK, 0, block_mask},
    [PF_MASK_STRUCTURED] = {"structured", SALT_STRUCTURED, 1, structured_mask},
    [PF_MASK_FACIAL] = {"facial", SALT_FACIAL, 1, facial_mask},
};

/* 1 when kind is the id of a filled row of KINDS. */
static int known_kind(int kind) { return kind >= 0 && kind < PF_MASK_NUM_KINDS && KINDS[kind].row; }

/* kind -> its name, or NULL (masking.h). */
const char *pf_get_mask_kind_name(int kind) { return known_kind(kind) ? KINDS[kind].name : NULL; }

/* name -> its kind, or -1 (masking.h). */
int pf_get_mask_kind(const char *name) {
    for (int k = 0; name && k < PF_MASK_NUM_KINDS; k++)
        if (known_kind(k) && strcmp(KINDS[k].name, name) == 0) return k;
    return -1;
}

/* ---------------------------------------------------------------- the batch driver */

/* regions (n): every id a component id, or PF_EINVAL naming the first that is not. */
static pf_status check_regions(const int64_t *regions, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (regions[i] < 0 || regions[i] >= PF_NUM_COMPONENTS)
            return pf_fail(PF_EINVAL, "mask_sample: regions (flat index %lld) holds %lld, outside the component "
                           "ids [0, %d)", (long long)i, (long long)regions[i], PF_NUM_COMPONENTS);
    return PF_OK;
}

/* The kind and the request (masking.h), or PF_EINVAL naming what is out of range. */
static pf_status check_request(int kind, const pf_mask_request *r) {
    if (!known_kind(kind))
        return pf_fail(PF_EINVAL, "mask_sample: unknown masking kind %d (kinds are 0..%d)", kind,
                       PF_MASK_NUM_KINDS - 1);
    const char *who = KINDS[kind].name;
    if (r->B < 0) return pf_fail(PF_EINVAL, "mask_sample(%s): batch size must be >= 0, got %lld", who, (long long)r->B);
    if (r->G < 1 || r->G > PF_MASK_MAX_GRID)
        return pf_fail(PF_EINVAL, "mask_sample(%s): grid must be in [1, %d], got %lld", who, PF_MASK_MAX_GRID,
                       (long long)r->G);
    const int64_t N = r->G * r->G;
    if (r->n_mask < 0 || r->n_mask > N)
        return pf_fail(PF_EINVAL, "mask_sample(%s): n_mask must be in [0, N = %lld], got %lld", who, (long long)N,
                       (long long)r->n_mask);
    if (r->n_region < 0 || r->n_region > r->n_mask)
        return pf_fail(PF_EINVAL, "mask_sample(%s): n_region must be in [0, n_mask = %lld], got %lld", who,
                       (long long)r->n_mask, (long long)r->n_region);
    if (!KINDS[kind].needs_regions) return PF_OK;
    if (!r->regions) return pf_fail(PF_EINVAL, "mask_sample(%s): this kind needs a region map, got none", who);
    return check_regions(r->regions, (r->regions_per_image ? r->B : 1) * N);
}

/* mask (B, N), ids_keep (B, N - n_mask), ids_restore (B, N) <- rows b in [0, B) of one kind (masking.h). */
pf_status pf_mask_sample(int kind, const pf_mask_request *req, uint8_t *mask, int64_t *ids_keep,
                         int64_t *ids_restore) {
    TRY(check_request(kind, req));
    const int64_t B = req->B, N = req->G * req->G, n_keep = N - req->n_mask;
    const int reads_regions = KINDS[kind].needs_regions;
    const int nt = pf_get_num_threads();
    int64_t *scratch = pf_malloc((size_t)nt * (size_t)N * sizeof(int64_t));
    if (!scratch) return pf_fail(PF_ENOMEM, "masking: out of memory for %d x %lld scratch indices", nt, (long long)N);
#pragma omp parallel num_threads(nt) if (B > 1 && B * N >= 4096)
    {
        int64_t *tmp = scratch + (size_t)pf_thread_num() * (size_t)N;
        row_args a = {req->G, N, req->n_mask, req->n_region, NULL};
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            uint8_t *m = mask + b * N;
            stream s = stream_for(KINDS[kind].salt, req->seed, req->step, req->indices[b]);
            a.regions = reads_regions ? req->regions + (req->regions_per_image ? b * N : 0) : NULL;
            memset(m, 0, (size_t)N);
            KINDS[kind].row(m, &a, &s, tmp);
            row_ids(m, N, req->n_mask, ids_keep + b * n_keep, ids_restore + b * N);
        }
    }
    free(scratch);
    return PF_OK;
}

/* ---------------------------------------------------------------- substitution positions */

/* indices (B) -> out (B, s): per row a random mask of s among n_keep (random_row under
 * SALT_SUBST), listed in ascending order (masking.h). */
pf_status pf_subst_positions(uint64_t seed, uint64_t step, const int64_t *indices, int64_t B, int64_t n_keep,
                             int64_t s, int64_t *out) {
    if (B < 0 || n_keep < 0 || n_keep > PF_SUBST_MAX_KEEP || s < 0 || s > n_keep)
        return pf_fail(PF_EINVAL, "subst_positions: need B >= 0, 0 <= s <= n_keep <= %lld, got B %lld, s %lld, "
                       "n_keep %lld", (long long)PF_SUBST_MAX_KEEP, (long long)B, (long long)s, (long long)n_keep);
    const int nt = pf_get_num_threads();
    const size_t per_thread = ((size_t)n_keep * (sizeof(int64_t) + 1) + PF_ALIGN) / PF_ALIGN * PF_ALIGN;
    char *scratch = pf_malloc((size_t)nt * per_thread);
    if (!scratch) return pf_fail(PF_ENOMEM, "subst_positions: out of memory for %d x %lld scratch indices", nt,
                                 (long long)n_keep);
#pragma omp parallel num_threads(nt) if (B > 1 && B * n_keep >= 4096)
    {
        int64_t *perm = (int64_t *)(scratch + (size_t)pf_thread_num() * per_thread);
        uint8_t *chosen = (uint8_t *)(perm + n_keep);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            stream st = stream_for(SALT_SUBST, seed, step, indices[b]);
            memset(chosen, 0, (size_t)n_keep);
            random_row(chosen, n_keep, s, &st, perm); /* a uniform s-subset, as a random mask */
            int64_t *row = out + b * s, k = 0;
            for (int64_t i = 0; i < n_keep; i++)
                if (chosen[i]) row[k++] = i;
        }
    }
    free(scratch);
    return PF_OK;
}
