/* The gradient of the binary cross-entropy with respect to a logit, for a
 * soft target, without the cancellation of working precision.
 *
 * d loss / d z = (1 - y) sigmoid(z) - w y sigmoid(-z) is the difference of two
 * terms that cancel where sigmoid(z) is close to y / (1 - y + w y) -- a soft
 * target at a good fit. Rounded in double, each term carries an error of about
 * one ulp of itself (mostly from exp), so the difference is only exact to a
 * few ulps of the *terms*: 26 ulps of the result were seen. Here exp(-|z|) is
 * computed to about 2^-75 relative as a pair of doubles (hi + lo), the terms
 * are formed over one denominator with error-free products and sums, and the
 * result is rounded once: exact to an ulp or two wherever the two terms differ
 * in their leading 20-odd bits, which covers every fit short of an exact
 * equality (the float32 kernels use this too: far more than they need).
 *
 * This file is compiled WITHOUT -ffast-math and with -ffp-contract=off
 * (skbce/meson.build): the error-free transformations below (two_sum's
 * (a + b) - a) are exactly what fast-math's re-association folds away. Its
 * loop has no calls and no branches that the vectoriser cannot if-convert
 * (table look-ups become gathers), so it still runs in vector registers.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "_precise.h"

/* 2^(j/64) = hi[j] + lo[j], j = 0..63, |lo| <= ulp(hi)/2, computed with
 * mpmath at 300 bits. */
static const double two_j64_hi[64] = {
    0x1.0000000000000p+0,
    0x1.02c9a3e778061p+0,
    0x1.059b0d3158574p+0,
    0x1.0874518759bc8p+0,
    0x1.0b5586cf9890fp+0,
    0x1.0e3ec32d3d1a2p+0,
    0x1.11301d0125b51p+0,
    0x1.1429aaea92de0p+0,
    0x1.172b83c7d517bp+0,
    0x1.1a35beb6fcb75p+0,
    0x1.1d4873168b9aap+0,
    0x1.2063b88628cd6p+0,
    0x1.2387a6e756238p+0,
    0x1.26b4565e27cddp+0,
    0x1.29e9df51fdee1p+0,
    0x1.2d285a6e4030bp+0,
    0x1.306fe0a31b715p+0,
    0x1.33c08b26416ffp+0,
    0x1.371a7373aa9cbp+0,
    0x1.3a7db34e59ff7p+0,
    0x1.3dea64c123422p+0,
    0x1.4160a21f72e2ap+0,
    0x1.44e086061892dp+0,
    0x1.486a2b5c13cd0p+0,
    0x1.4bfdad5362a27p+0,
    0x1.4f9b2769d2ca7p+0,
    0x1.5342b569d4f82p+0,
    0x1.56f4736b527dap+0,
    0x1.5ab07dd485429p+0,
    0x1.5e76f15ad2148p+0,
    0x1.6247eb03a5585p+0,
    0x1.6623882552225p+0,
    0x1.6a09e667f3bcdp+0,
    0x1.6dfb23c651a2fp+0,
    0x1.71f75e8ec5f74p+0,
    0x1.75feb564267c9p+0,
    0x1.7a11473eb0187p+0,
    0x1.7e2f336cf4e62p+0,
    0x1.82589994cce13p+0,
    0x1.868d99b4492edp+0,
    0x1.8ace5422aa0dbp+0,
    0x1.8f1ae99157736p+0,
    0x1.93737b0cdc5e5p+0,
    0x1.97d829fde4e50p+0,
    0x1.9c49182a3f090p+0,
    0x1.a0c667b5de565p+0,
    0x1.a5503b23e255dp+0,
    0x1.a9e6b5579fdbfp+0,
    0x1.ae89f995ad3adp+0,
    0x1.b33a2b84f15fbp+0,
    0x1.b7f76f2fb5e47p+0,
    0x1.bcc1e904bc1d2p+0,
    0x1.c199bdd85529cp+0,
    0x1.c67f12e57d14bp+0,
    0x1.cb720dcef9069p+0,
    0x1.d072d4a07897cp+0,
    0x1.d5818dcfba487p+0,
    0x1.da9e603db3285p+0,
    0x1.dfc97337b9b5fp+0,
    0x1.e502ee78b3ff6p+0,
    0x1.ea4afa2a490dap+0,
    0x1.efa1bee615a27p+0,
    0x1.f50765b6e4540p+0,
    0x1.fa7c1819e90d8p+0,
};
static const double two_j64_lo[64] = {
    0x0.0p+0,
    -0x1.19083535b085dp-56,
    0x1.d73e2a475b465p-55,
    0x1.186be4bb284ffp-57,
    0x1.8a62e4adc610bp-54,
    0x1.03a1727c57b53p-59,
    -0x1.6c51039449b3ap-54,
    -0x1.32fbf9af1369ep-54,
    -0x1.19041b9d78a76p-55,
    0x1.e5b4c7b4968e4p-55,
    0x1.e016e00a2643cp-54,
    0x1.dc775814a8495p-55,
    0x1.9b07eb6c70573p-54,
    0x1.2bd339940e9d9p-55,
    0x1.612e8afad1255p-55,
    0x1.0024754db41d5p-54,
    0x1.6f46ad23182e4p-55,
    0x1.32721843659a6p-54,
    -0x1.63aeabf42eae2p-54,
    -0x1.5e436d661f5e3p-56,
    0x1.ada0911f09ebcp-55,
    -0x1.ef3691c309278p-58,
    0x1.89b7a04ef80d0p-59,
    0x1.3c1a3b69062f0p-56,
    0x1.d4397afec42e2p-56,
    -0x1.4b309d25957e3p-54,
    -0x1.07abe1db13cadp-55,
    0x1.9bb2c011d93adp-54,
    0x1.6324c054647adp-54,
    0x1.ba6f93080e65ep-54,
    -0x1.383c17e40b497p-54,
    -0x1.bb60987591c34p-54,
    -0x1.bdd3413b26456p-54,
    -0x1.bbe3a683c88abp-57,
    -0x1.16e4786887a99p-55,
    -0x1.0245957316dd3p-54,
    -0x1.41577ee04992fp-55,
    0x1.05d02ba15797ep-56,
    -0x1.d4c1dd41532d8p-54,
    -0x1.fc6f89bd4f6bap-54,
    0x1.6e9f156864b27p-54,
    0x1.5cc13a2e3976cp-55,
    -0x1.75fc781b57ebcp-57,
    -0x1.d185b7c1b85d1p-54,
    0x1.c7c46b071f2bep-56,
    -0x1.359495d1cd533p-54,
    -0x1.d2f6edb8d41e1p-54,
    0x1.0fac90ef7fd31p-54,
    0x1.7a1cd345dcc81p-54,
    -0x1.2805e3084d708p-57,
    -0x1.5584f7e54ac3bp-56,
    0x1.23dd07a2d9e84p-55,
    0x1.11065895048ddp-55,
    0x1.2884dff483cadp-54,
    0x1.503cbd1e949dbp-56,
    -0x1.cbc3743797a9cp-54,
    0x1.2ed02d75b3707p-55,
    0x1.c2300696db532p-54,
    -0x1.1a5cd4f184b5cp-54,
    0x1.39e8980a9cc8fp-55,
    -0x1.e9c23179c2893p-54,
    0x1.dc7f486a4b6b0p-54,
    0x1.9d3e12dd8a18bp-54,
    0x1.74853f3a5931ep-55,
};

/* ln2/64 = C1 + C2 + C3, C1 with 35 significant bits, so that k * C1 is
 * exact for the |k| < 2^18 that occur; 64 / ln 2 rounded; 1/6 = S6_HI +
 * S6_LO. */
#define LN2_64_C1 0x1.62e42fefc0000p-7
#define LN2_64_C2 -0x1.c610ca86c3899p-43
#define LN2_64_C3 0x1.803f2f6af40f3p-98
#define INV_LN2_64 0x1.71547652b82fep+6
#define S6_HI 0x1.5555555555555p-3
#define S6_LO 0x1.5555555555555p-57

static inline void two_sum(double a, double b, double *s, double *e) {
    double x = a + b;
    double bv = x - a;
    double av = x - bv;
    *e = (a - av) + (b - bv);
    *s = x;
}

static inline void fast_two_sum(double a, double b, double *s, double *e) {
    /* |a| >= |b| (or a == 0) */
    double x = a + b;
    *e = b - (x - a);
    *s = x;
}

static inline void two_prod(double a, double b, double *p, double *e) {
    double x = a * b;
#if defined(__FMA__) || defined(__aarch64__)
    *e = fma(a, b, -x);
#else
    /* Dekker's product: without a hardware FMA, fma() is a slow library
     * call. */
    const double split = 134217729.0; /* 2^27 + 1 */
    double ta = split * a, tb = split * b;
    double ah = ta - (ta - a), bh = tb - (tb - b);
    double al = a - ah, bl = b - bh;
    *e = ((ah * bh - x) + ah * bl + al * bh) + al * bl;
#endif
    *p = x;
}

static inline double power_of_two(int m) {
    /* 2^m for -1022 <= m <= 1023, from its bits */
    uint64_t bits = (uint64_t)(m + 1023) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* exp(x) = *hi + *lo to about 2^-85 relative (measured), for -700 <= x <= 0;
 * below, the low part falls into the subnormals and the relative error
 * grows to 2^-66 at -700 (only a target below 1e-290 could meet it).
 *
 * x = (64 m + j) ln2/64 + r, |r| <= ln2/128, r as a pair; exp(x) =
 * 2^m 2^(j/64) exp(r), the table entry a pair, and exp(r) from its Taylor
 * series: the terms up to r^3 as pairs, the rest (below 4e-11) in double.
 * The indices are int (the conversion every level vectorises; AVX2 has no
 * double -> int64 one), the table index a long (with an int index gcc 12 did
 * not vectorise the gather). */
static inline void exp_dd(double x, double *hi, double *lo) {
    /* below -746 exp(x) rounds to 0 all the same; the clamp keeps 2^m in
     * range */
    x = x < -746.0 ? -746.0 : x;
    double kd = nearbyint(x * INV_LN2_64);
    int k = (int)kd;
    long j = k & 63;
    int m = k >> 6; /* floor(k / 64): k = 64 m + j, 0 <= j < 64 */
    /* r = rh + rl: x - k C1 is exact (Sterbenz), the rest error-free to far
     * below 2^-100 */
    double s = x - kd * LN2_64_C1;
    double p2, p2e, rh, rl;
    two_prod(kd, LN2_64_C2, &p2, &p2e);
    two_sum(s, -p2, &rh, &rl);
    rl = rl - p2e - kd * LN2_64_C3;
    /* exp(r) - 1 = a = r + r^2/2 + r^3/6 + r^4 P(r) */
    double qh, ql, ch, cl, c6h, c6l;
    two_prod(rh, rh, &qh, &ql);
    ql += 2.0 * rh * rl;
    two_prod(qh, rh, &ch, &cl);
    cl += ql * rh + qh * rl;
    two_prod(ch, S6_HI, &c6h, &c6l);
    c6l += ch * S6_LO + cl * S6_HI;
    double tail = qh * qh * (1.0 / 24 + rh * (1.0 / 120 + rh * (1.0 / 720 + rh * (1.0 / 5040
                  + rh * (1.0 / 40320)))));
    double s1, e1, s2, e2, s3, e3, eh, el;
    two_sum(rh, 0.5 * qh, &s1, &e1);
    two_sum(s1, c6h, &s2, &e2);
    two_sum(1.0, s2, &s3, &e3);
    fast_two_sum(s3, e1 + e2 + e3 + rl + 0.5 * ql + c6l + tail, &eh, &el);
    /* times 2^(j/64) */
    double th = two_j64_hi[j], tl = two_j64_lo[j];
    double ph, pe;
    two_prod(th, eh, &ph, &pe);
    fast_two_sum(ph, pe + th * el + tl * eh, &eh, &el);
    /* times 2^m in two steps, each factor a normal number, so that a result
     * below the normal range is rounded once */
    int m1 = m / 2;
    double f1 = power_of_two(m1), f2 = power_of_two(m - m1);
    *hi = eh * f1 * f2;
    *lo = el * f1 * f2;
}

/* always_inline: at the baseline level gcc otherwise kept it a call, and a
 * loop with a call is not vectorised */
static inline __attribute__((always_inline)) double gradient_dd(double yi, double zi, double wi) {
    int positive = zi >= 0;
    double eh, el;
    exp_dd(positive ? -zi : zi, &eh, &el);
    /* A = 1 - y and B = w y, error-free */
    double ah, al, bh, bl;
    two_sum(1.0, -yi, &ah, &al);
    two_prod(wi, yi, &bh, &bl);
    /* z >= 0: g = (A - B e) / (1 + e); z < 0: g = (A e - B) / (1 + e).
     * X e for the one of A, B that meets e. */
    double xh = positive ? bh : ah, xl = positive ? bl : al;
    double ph, pe;
    two_prod(xh, eh, &ph, &pe);
    double pl = pe + xh * el + xl * eh;
    /* U - V, U = A or A e, V = B e or B */
    double uh = positive ? ah : ph, ul = positive ? al : pl;
    double vh = positive ? ph : bh, vl = positive ? pl : bl;
    double nh, ne;
    two_sum(uh, -vh, &nh, &ne);
    double numerator = nh + (ne + (ul - vl));
    /* over 1 + e, as a pair too: q = N / (1 + e) from one reciprocal,
     * then corrected by the remainder N - q (1 + e), computed
     * error-free (one division per entry: two cost a third more). */
    double dh, de;
    two_sum(1.0, eh, &dh, &de);
    double dl = de + el;
    double reciprocal = 1.0 / dh;
    double q = numerator * reciprocal;
    double rh, re;
    two_prod(q, dh, &rh, &re);
    double remainder = ((nh - rh) - re) + (ne + (ul - vl)) - q * dl;
    return q + remainder * reciprocal;
}

void skbce_logit_gradient_dd(
    const double *y, const double *z, const double *pos_weight, double scalar_pos_weight,
    ptrdiff_t n, double *out
) {
    /* two loops, not a select of the weight: the baseline level does not
     * vectorise a conditional load */
    if (pos_weight == NULL) {
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = gradient_dd(y[i], z[i], scalar_pos_weight);
    } else {
        for (ptrdiff_t i = 0; i < n; i++)
            out[i] = gradient_dd(y[i], z[i], pos_weight[i]);
    }
}
