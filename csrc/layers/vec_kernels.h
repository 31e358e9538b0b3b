/* vec_kernels.h: per-ISA element-wise kernels (vec_kernels.c). */
#ifndef PF_VEC_KERNELS_H
#define PF_VEC_KERNELS_H

#include <stdint.h>

typedef struct {
    const char *name;
    void (*gelu_fwd)(float *out, const float *inp, int64_t i0, int64_t i1);
    void (*gelu_fwd16)(uint16_t *out, const float *inp, int64_t i0, int64_t i1);
    void (*gelu_bwd)(float *dinp, const float *inp, const float *dout, int64_t i0, int64_t i1, int set);
    void (*gelu_bwd16)(uint16_t *dinp16, float *acc, const float *inp, const float *dout, int64_t r0, int64_t r1,
                       int64_t H);
    void (*softmax_rows)(float *att, int64_t rows, int64_t T);
} pf_vec_kernels;

const pf_vec_kernels *pf_vec(void);

#endif
