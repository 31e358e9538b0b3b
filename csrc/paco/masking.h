/* masking.h: PaCo-FR patch masks (docs/method.md section 1): random (MAE), block (BEiT) and
 * structured (whole facial components, then a spatially coherent top-up), facial (whole facial
 * components up to a budget, then random patches); and the positions of
 * the substituted patches, from the same counter-based generator. */
#ifndef PF_MASKING_H
#define PF_MASKING_H

#include <stdint.h>
#include "pf.h"

/* Facial components of a region map (ids 0..12, pacofr.masking.COMPONENTS). */
#define PF_NUM_COMPONENTS 13
/* Largest grid side G accepted (N = G * G patches). */
#define PF_MASK_MAX_GRID 4096

/* Every kind fills, for each image b of a batch of B on a G x G grid (N = G * G patches):
 *   mask        (B, N) uint8: 1 = removed, exactly n_mask ones per row (0 <= n_mask <= N);
 *   ids_keep    (B, N - n_mask) int64: the kept patch indices, ascending;
 *   ids_restore (B, N) int64: argsort of ids_shuffle = [ids_keep, removed ascending], so
 *               ids_shuffle[ids_restore] == arange(N) (MAE's convention).
 * Row b is a pure function of (seed, step, indices[b]) and of the kind's inputs for that row:
 * the same whatever the batch composition or thread count. */
pf_status pf_mask_random(uint8_t *mask, int64_t *ids_keep, int64_t *ids_restore, int64_t B, int64_t G,
                         int64_t n_mask, uint64_t seed, uint64_t step, const int64_t *indices);

pf_status pf_mask_block(uint8_t *mask, int64_t *ids_keep, int64_t *ids_restore, int64_t B, int64_t G,
                        int64_t n_mask, uint64_t seed, uint64_t step, const int64_t *indices);

/* regions: component ids in [0, PF_NUM_COMPONENTS), (N,) shared by the batch when
 * regions_per_image is 0, else (B, N). */
pf_status pf_mask_structured(uint8_t *mask, int64_t *ids_keep, int64_t *ids_restore, int64_t B, int64_t G,
                             int64_t n_mask, uint64_t seed, uint64_t step, const int64_t *indices,
                             const int64_t *regions, int regions_per_image);

/* Facial-components-first masks: whole components other than hair/background (id 12), in a
 * random order, while the count stays <= n_region (0 <= n_region <= n_mask); then a uniformly
 * random top-up among the unmasked patches to n_mask. regions as for pf_mask_structured. */
pf_status pf_mask_facial(uint8_t *mask, int64_t *ids_keep, int64_t *ids_restore, int64_t B, int64_t G,
                         int64_t n_mask, int64_t n_region, uint64_t seed, uint64_t step, const int64_t *indices,
                         const int64_t *regions, int regions_per_image);

/* Largest n_keep pf_subst_positions accepts (the largest patch count, PF_MASK_MAX_GRID^2). */
#define PF_SUBST_MAX_KEEP ((int64_t)PF_MASK_MAX_GRID * PF_MASK_MAX_GRID)

/* PaCo-FR's substitution positions (docs/method.md section 2): indices (B) -> out (B, s) int64, row b = s distinct
 * positions in [0, n_keep) (places within that image's ids_keep), ascending, uniform over the
 * s-subsets: a pure function of (seed, step, indices[b]) with its own stream, so the same
 * whatever the batch composition or thread count. 0 <= s <= n_keep. */
pf_status pf_subst_positions(uint64_t seed, uint64_t step, const int64_t *indices, int64_t B, int64_t n_keep,
                             int64_t s, int64_t *out);

#endif
