# cython: language_level=3
# Register tiles: 32 bytes of label values as a GCC/Clang vector type, shared
# by the CSR products (_csr_kernels) and dual coordinate descent
# (_dual_kernels), whose inner loops run over the labels of a tile.

cdef extern from *:
    """
    /* A register tile: 32 bytes of label values, 4 doubles or 8 floats, as
       a GCC/Clang vector type passed by value, so that the accumulator stays
       in registers through a row's nonzeros. (gcc's loop vectoriser turns the
       same loop over a small local array into gathers across the nonzeros,
       and its SLP vectoriser cannot keep a reduction in a register.) Memory
       is accessed through an 8-byte-aligned, may_alias twin of the type: the
       rows of label values are not 64-byte aligned. */
    #if defined(__GNUC__) || defined(__clang__)
    #define SKBCE_TILE_OPS(T, E, N) \
        typedef E T __attribute__((vector_size(32))); \
        typedef E T##_mem __attribute__((vector_size(32), aligned(sizeof(E)), may_alias)); \
        static inline T T##_zero(void) { T t = {0}; return t; } \
        static inline T T##_add(T a, T b) { return a + b; } \
        static inline T T##_load(const E *x) { return *(const T##_mem *)x; } \
        static inline void T##_store(T t, E *x) { *(T##_mem *)x = t; } \
        static inline T T##_fma(T t, E a, const E *x) { return t + a * *(const T##_mem *)x; } \
        static inline void T##_axpy(E *x, E a, T t) { *(T##_mem *)x += a * t; }
    #else
    #define SKBCE_TILE_OPS(T, E, N) \
        typedef struct { E v[N]; } T; \
        static inline T T##_zero(void) { T t = {{0}}; return t; } \
        static inline T T##_add(T a, T b) { for (int c = 0; c < N; c++) a.v[c] += b.v[c]; return a; } \
        static inline T T##_load(const E *x) { T t; for (int c = 0; c < N; c++) t.v[c] = x[c]; return t; } \
        static inline void T##_store(T t, E *x) { for (int c = 0; c < N; c++) x[c] = t.v[c]; } \
        static inline T T##_fma(T t, E a, const E *x) { \
            for (int c = 0; c < N; c++) t.v[c] += a * x[c]; return t; } \
        static inline void T##_axpy(E *x, E a, T t) { for (int c = 0; c < N; c++) x[c] += a * t.v[c]; }
    #endif
    SKBCE_TILE_OPS(skbce_tile_d, double, 4)
    SKBCE_TILE_OPS(skbce_tile_f, float, 8)
    """
    ctypedef struct skbce_tile_d:
        pass
    ctypedef struct skbce_tile_f:
        pass
    skbce_tile_d skbce_tile_d_zero() noexcept nogil
    skbce_tile_d skbce_tile_d_add(skbce_tile_d a, skbce_tile_d b) noexcept nogil
    skbce_tile_d skbce_tile_d_load(const double *x) noexcept nogil
    void skbce_tile_d_store(skbce_tile_d t, double *x) noexcept nogil
    skbce_tile_d skbce_tile_d_fma(skbce_tile_d t, double a, const double *x) noexcept nogil
    void skbce_tile_d_axpy(double *x, double a, skbce_tile_d t) noexcept nogil
    skbce_tile_f skbce_tile_f_zero() noexcept nogil
    skbce_tile_f skbce_tile_f_add(skbce_tile_f a, skbce_tile_f b) noexcept nogil
    skbce_tile_f skbce_tile_f_load(const float *x) noexcept nogil
    void skbce_tile_f_store(skbce_tile_f t, float *x) noexcept nogil
    skbce_tile_f skbce_tile_f_fma(skbce_tile_f t, float a, const float *x) noexcept nogil
    void skbce_tile_f_axpy(float *x, float a, skbce_tile_f t) noexcept nogil
