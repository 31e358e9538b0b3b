/* masking.h: PaCo-FR patch masks (docs/method.md section 1), one entry point pf_mask_sample over
 * the kinds of pf_mask_kind: random (MAE), block (BEiT), structured (whole facial components,
 * then a spatially coherent top-up), facial (whole facial components up to a budget, then
 * random patches); and the positions of the substituted patches, from the same counter-based
 * generator. */
#ifndef PF_MASKING_H
#define PF_MASKING_H

#include <stdint.h>
#include "pf.h"

/* Facial components of a region map (ids 0..12, pacofr.masking.COMPONENTS). */
#define PF_NUM_COMPONENTS 13
/* Largest grid side G accepted (N = G * G patches). */
#define PF_MASK_MAX_GRID 4096

/* The mask kinds, in the order of the kind table in masking.c (its names are pacofr.masking.KINDS,
 * in this order; tests/test_masking.py pins the agreement). */
typedef enum {
    PF_MASK_RANDOM,      /* "random": a uniform random subset (MAE) */
    PF_MASK_BLOCK,       /* "block": BEiT's block-wise rectangles, then a spatially coherent top-up */
    PF_MASK_STRUCTURED,  /* "structured": whole components of a region map, then the coherent top-up */
    PF_MASK_FACIAL,      /* "facial": whole facial components up to n_region patches, then random ones */
    PF_MASK_NUM_KINDS
} pf_mask_kind;

/* The name of kind k ("random", ...), or NULL when k is not in [0, PF_MASK_NUM_KINDS). */
const char *pf_get_mask_kind_name(int kind);
/* The kind called `name`, or -1 when none is. */
int pf_get_mask_kind(const char *name);

/* What one batch of masks is drawn from, B images on a G x G grid (N = G * G patches). */
typedef struct {
    int64_t B, G;              /* B >= 0, G in [1, PF_MASK_MAX_GRID] */
    int64_t n_mask;            /* patches removed per row, in [0, N] */
    int64_t n_region;          /* in [0, n_mask]: "facial"'s budget of whole components; others ignore it */
    uint64_t seed, step;
    const int64_t *indices;    /* (B) global sample indices */
    const int64_t *regions;    /* component ids in [0, PF_NUM_COMPONENTS): (N) shared by the batch when
                                * regions_per_image is 0, else (B, N); NULL for a kind that reads none */
    int regions_per_image;
} pf_mask_request;

/* Masks of kind `kind` for the batch of `req`, filling for each image b:
 *   mask        (B, N) uint8: 1 = removed, exactly n_mask ones per row;
 *   ids_keep    (B, N - n_mask) int64: the kept patch indices, ascending;
 *   ids_restore (B, N) int64: argsort of ids_shuffle = [ids_keep, removed ascending], so
 *               ids_shuffle[ids_restore] == arange(N) (MAE's convention).
 * Row b is a pure function of (kind, seed, step, indices[b]) and of its region map: the same
 * whatever the batch composition or thread count. PF_EINVAL (nothing written) for an unknown
 * kind, sizes out of range, a missing region map where the kind reads one, or region ids out of
 * range; regions given to a kind that reads none are ignored. */
pf_status pf_mask_sample(int kind, const pf_mask_request *req, uint8_t *mask, int64_t *ids_keep,
                         int64_t *ids_restore);

/* Largest n_keep pf_subst_positions accepts (the largest patch count, PF_MASK_MAX_GRID^2). */
#define PF_SUBST_MAX_KEEP ((int64_t)PF_MASK_MAX_GRID * PF_MASK_MAX_GRID)

/* PaCo-FR's substitution positions (docs/method.md section 2): indices (B) -> out (B, s) int64,
 * row b = s distinct positions in [0, n_keep) (places within that image's ids_keep), ascending,
 * uniform over the s-subsets: a pure function of (seed, step, indices[b]) with its own stream, so the same
 * whatever the batch composition or thread count. 0 <= s <= n_keep. */
pf_status pf_subst_positions(uint64_t seed, uint64_t step, const int64_t *indices, int64_t B, int64_t n_keep,
                             int64_t s, int64_t *out);

#endif
