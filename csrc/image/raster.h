/* raster.h: SynthFace's layer painter (raster.c). */
#ifndef PF_RASTER_H
#define PF_RASTER_H

#include <stdint.h>
#include "pf.h"

/* Per-image parameters (floats):
 *  0-3   head ellipse cx, cy, rx, ry in pixels: lit layers take their normals from it
 *  4-6   unit light direction (z towards the camera); 7 ambient (0..1)
 *  8     specular strength on lit layers (0..1)
 *  9-10  skin texture amplitude (fraction of the colour) and cell size (pixels)
 *  11    hair strand amplitude (fraction)
 *  12-13 background texture amplitude (0..255) and cell size (pixels)
 *  14-15 background stripe period (pixels, 0 for none) and angle (radians) */
#define PF_RASTER_NPARAM 16

/* Layer shading flags. */
enum { PF_SHADE_LIT = 1, PF_SHADE_SKIN = 2, PF_SHADE_HAIR = 4 };

/* out (B, S, S, 3) uint8, labels (B, S, S) uint8; layers: image b's records are
 * layers[offsets[b] : offsets[b+1]]; params (B, PF_RASTER_NPARAM); background (B, 6) top and
 * bottom RGB; keys (B,) seed the textures of each image. */
pf_status pf_raster_faces(uint8_t *out, uint8_t *labels, int64_t B, int64_t S, const float *layers,
                          const int64_t *offsets, const float *params, const float *background,
                          const uint64_t *keys);

#endif
