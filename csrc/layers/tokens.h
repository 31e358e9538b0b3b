/* tokens.h: token assembly: cls + position embeddings for the kept patches, and the decoder's mask-token unshuffle.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_TOKENS_H
#define PF_LAYERS_TOKENS_H

#include <stdint.h>
#include "pf.h"

void pf_tokens_forward(float *x, const float *emb, const float *cls, const float *pos,
                       const int64_t *ids, int64_t B, int64_t n, int64_t C);
void pf_tokens_backward(float *demb, float *dcls, float *dpos, const float *dx,
                        const int64_t *ids, int64_t B, int64_t n, int64_t C);
void pf_unshuffle_forward(float *full, const float *x, const float *mask_token, const float *pos,
                          const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                          int64_t N, int64_t C);
void pf_unshuffle_backward(float *dx, float *dmask_token, float *dpos, const float *dfull,
                           const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                           int64_t N, int64_t C);

#endif
