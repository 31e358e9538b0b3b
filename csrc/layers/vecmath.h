/* vecmath.h: branch-free float erf and exp that the compiler vectorises (glibc's erff and
 * expf are scalar calls). Coefficients: least-squares fits in double (numpy polyfit) of
 *   erf(x)/x in x^2 on [0, 0.9],  log(erfc(x)) in (x - 2.45) on [0.9, 4],  e^r on |r| <= ln2/2;
 * erf is then within 2.4e-7 relative (about 3 ulp) of the exact value, exp within 2 ulp. */
#ifndef PF_VECMATH_H
#define PF_VECMATH_H

#include <stdint.h>
#include <string.h>

/* e^v for v in [-87, 88]; callers clamp. 2^n is built from its exponent bits. */
static inline float pf_expf(float v) {
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (v * 1.44269504088896341f + shifter) - shifter;
    float r = v - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    float p = 0.0013944614872054549f;
    p = p * r + 0.00837192194830193f;
    p = p * r + 0.04166628014375018f;
    p = p * r + 0.16666455769784788f;
    p = p * r + 0.5000000084466505f;
    p = p * r + 1.000000028165431f;
    p = p * r + 0.9999999999718037f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf(x) for finite x. */
static inline float pf_erff(float x) {
    const float a = x < 0.0f ? -x : x;
    const float t = a * a;
    float s = 8.601086118541147e-05f;
    s = s * t - 0.000819683705886815f;
    s = s * t + 0.005205779670122568f;
    s = s * t - 0.026861315402647384f;
    s = s * t + 0.11283730585273823f;
    s = s * t - 0.37612636123583876f;
    s = s * t + 1.1283791669352738f;
    const float small = a * s;
    const float u = (a < 4.0f ? a : 4.0f) - 2.45f;
    float q = -3.844222484745075e-08f;
    q = q * u + 1.6277748237900363e-06f;
    q = q * u - 1.3747489872446746e-05f;
    q = q * u + 8.210595526981273e-05f;
    q = q * u - 0.0004444462234466196f;
    q = q * u + 0.0022732376797938176f;
    q = q * u - 0.011302000587271922f;
    q = q * u - 0.942231886281044f;
    q = q * u - 5.258373896415305f;
    q = q * u - 7.541539604004592f;
    const float e = pf_expf(q); /* computed for every x: selects, not branches, vectorise */
    const float big = a < 4.0f ? 1.0f - e : 1.0f;
    const float r = a <= 0.9f ? small : big;
    return __builtin_copysignf(r, x); /* gelu(NaN) stays NaN through its factor x */
}

#endif
