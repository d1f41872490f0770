/* Extra-precision point computations for the loss kernels (skbce/_precise.c,
 * compiled without -ffast-math). */
#ifndef SKBCE_PRECISE_H
#define SKBCE_PRECISE_H
#include <stddef.h>

/* out[i] = d/dz [w y softplus(-z) + (1 - y) softplus(z)] at y[i], z[i],
 * w = pos_weight[i] (scalar_pos_weight if pos_weight is NULL), rounded once
 * (see _precise.c). */
__attribute__((visibility("hidden")))
void skbce_logit_gradient_dd(
    const double *y, const double *z, const double *pos_weight, double scalar_pos_weight,
    ptrdiff_t n, double *out);

#endif
