/* raster.h: SynthFace's layer painter (raster.c). */
#ifndef PF_RASTER_H
#define PF_RASTER_H

#include <stdint.h>
#include "pf.h"

/* out (B, S, S, 3) uint8, labels (B, S, S) uint8; layers: image b's records are
 * layers[offsets[b] : offsets[b+1]]; params (B, 8); background (B, 6) top and bottom RGB. */
pf_status pf_raster_faces(uint8_t *out, uint8_t *labels, int64_t B, int64_t S, const float *layers,
                          const int64_t *offsets, const float *params, const float *background);

#endif
