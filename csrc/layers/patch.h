/* patch.h: patch extraction: im2col for the patch embedding (c, kh, kw) and patchify / unpatchify (p, q, c).
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_PATCH_H
#define PF_LAYERS_PATCH_H

#include <stdint.h>
#include "pf.h"

void pf_im2col(float *cols, const float *images, const int64_t *ids, int64_t B, int64_t n,
               int64_t S, int64_t p);
void pf_patchify(float *out, const float *images, int64_t B, int64_t S, int64_t p);
void pf_unpatchify(float *images, const float *patches, int64_t B, int64_t S, int64_t p);

#endif
