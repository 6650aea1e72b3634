"""The SIMD vocabulary of emitted C: GCC vector types and a few helpers, for one vector width.

Vectors are GCC vector extensions (`typedef float kc_vf32 __attribute__((vector_size(32)))`), so
`+ - * /` and comparisons are plain operators and the instruction set comes from the compiler flags
(`-march=x86-64-v3` gives AVX2 + FMA: `a * b + c` contracts to vfmadd under -ffp-contract=fast).
Loads and stores go through memcpy (unaligned, compiled to one vmovups) or a dereference when the
address is known to be aligned; partial vectors (remainders) use AVX-512 / AVX2 masked moves when the
target has them and a lane-count memcpy otherwise.  A broadcast is an initializer list, not `0 + x`
(which gcc may not fold without -ffast-math).  fmax/fmin keep numpy's NaN-ignoring rule via blends;
a reduction's running max/min is one vmaxps/vminps (its accumulator is never NaN).  Division by a
value the loop does not vary multiplies by its reciprocal (within the tolerance; edge cases kept).

exp, sigmoid, tanh and erf have vector forms (accuracy in their comments, inside the numeric policy's
f32 tolerance; exp uses vscalefps and log vgetmantps/vgetexpps where AVX-512 has them, log runs
libm's logf lane by lane elsewhere); sqrt, pow and the integer helpers run lane by lane with the
scalar libm calls.

Only 32-bit lanes are vectorized (f32, i32, and bool as an i32 mask of all ones / zeros); loops over
other types fall back to scalar code (docs/schedules.md says so).
"""

from __future__ import annotations

from kcomp.dtypes import DType

VECTOR_DTYPES = frozenset({DType.F32, DType.I32, DType.BOOL})
VTYPE = {DType.F32: "kc_vf32", DType.I32: "kc_vi32", DType.BOOL: "kc_vi32"}
CTYPE = {DType.F32: "float", DType.I32: "int32_t", DType.BOOL: "int32_t"}


def lanes(vector_bits: int) -> int:
    return max(1, vector_bits // 32)


def prelude(width: int) -> str:
    """Types and helpers for `width` 32-bit lanes."""
    nbytes = width * 4
    splat = ", ".join(["x"] * width)
    iota = ", ".join(str(k) for k in range(width))
    evens = ", ".join(str(2 * k) for k in range(width))
    return f"""
/* ---- SIMD: {width} x 32-bit lanes (targets/cpu/simd.py) ---- */
#include <string.h>
#include <immintrin.h>
typedef float kc_vf32 __attribute__((vector_size({nbytes})));
typedef int32_t kc_vi32 __attribute__((vector_size({nbytes})));
#define KC_W {width}
static inline kc_vf32 kc_splat_f32(float x) {{ return (kc_vf32){{{splat}}}; }}
static inline kc_vi32 kc_splat_i32(int32_t x) {{ return (kc_vi32){{{splat}}}; }}
static inline kc_vi32 kc_iota(void) {{ return (kc_vi32){{{iota}}}; }}
static inline kc_vf32 kc_load_f32(const float *p) {{ kc_vf32 v; memcpy(&v, p, sizeof v); return v; }}
static inline kc_vi32 kc_load_i32(const int32_t *p) {{ kc_vi32 v; memcpy(&v, p, sizeof v); return v; }}
static inline void kc_store_f32(float *p, kc_vf32 v) {{ memcpy(p, &v, sizeof v); }}
static inline void kc_store_i32(int32_t *p, kc_vi32 v) {{ memcpy(p, &v, sizeof v); }}
static inline kc_vf32 kc_aload_f32(const float *p) {{ return *(const kc_vf32 *)__builtin_assume_aligned(p, {nbytes}); }}
static inline kc_vi32 kc_aload_i32(const int32_t *p) {{ return *(const kc_vi32 *)__builtin_assume_aligned(p, {nbytes}); }}
static inline void kc_astore_f32(float *p, kc_vf32 v) {{ *(kc_vf32 *)__builtin_assume_aligned(p, {nbytes}) = v; }}
static inline void kc_astore_i32(int32_t *p, kc_vi32 v) {{ *(kc_vi32 *)__builtin_assume_aligned(p, {nbytes}) = v; }}
static inline kc_vi32 kc_lanes_below(int64_t n) {{ return kc_iota() < kc_splat_i32((int32_t)n); }}
/* Every other element from p (a stride-2 window, one phase of a pooling row): two contiguous loads
 * and one two-source shuffle (vpermt2ps) instead of {width} scalar loads; reads p[0..{2 * width - 1}]. */
static inline kc_vf32 kc_load2_f32(const float *p) {{
    return __builtin_shuffle(kc_load_f32(p), kc_load_f32(p + KC_W), (kc_vi32){{{evens}}});
}}
static inline kc_vi32 kc_load2_i32(const int32_t *p) {{
    return __builtin_shuffle(kc_load_i32(p), kc_load_i32(p + KC_W), (kc_vi32){{{evens}}});
}}
#if defined(__AVX512F__) && {nbytes} == 64
static inline kc_vf32 kc_loadn_f32(const float *p, int64_t n) {{ return (kc_vf32)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }}
static inline void kc_storen_f32(float *p, kc_vf32 v, int64_t n) {{ _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v); }}
#elif defined(__AVX2__) && {nbytes} == 32
static inline kc_vf32 kc_loadn_f32(const float *p, int64_t n) {{ return (kc_vf32)_mm256_maskload_ps(p, (__m256i)kc_lanes_below(n)); }}
static inline void kc_storen_f32(float *p, kc_vf32 v, int64_t n) {{ _mm256_maskstore_ps(p, (__m256i)kc_lanes_below(n), (__m256)v); }}
#else
static inline kc_vf32 kc_loadn_f32(const float *p, int64_t n) {{ kc_vf32 v = {{0}}; memcpy(&v, p, (size_t)n * 4); return v; }}
static inline void kc_storen_f32(float *p, kc_vf32 v, int64_t n) {{ memcpy(p, &v, (size_t)n * 4); }}
#endif
static inline kc_vi32 kc_loadn_i32(const int32_t *p, int64_t n) {{ kc_vi32 v = {{0}}; memcpy(&v, p, (size_t)n * 4); return v; }}
static inline void kc_storen_i32(int32_t *p, kc_vi32 v, int64_t n) {{ memcpy(p, &v, (size_t)n * 4); }}
static inline kc_vf32 kc_blend_f32(kc_vi32 m, kc_vf32 a, kc_vf32 b) {{ return (kc_vf32)((m & (kc_vi32)a) | (~m & (kc_vi32)b)); }}
static inline kc_vi32 kc_blend_i32(kc_vi32 m, kc_vi32 a, kc_vi32 b) {{ return (m & a) | (~m & b); }}
/* numpy's fmax/fmin: a NaN operand yields the other one */
static inline kc_vf32 kc_vmax_f32(kc_vf32 a, kc_vf32 b) {{ return kc_blend_f32((a >= b) | (b != b), a, b); }}
static inline kc_vf32 kc_vmin_f32(kc_vf32 a, kc_vf32 b) {{ return kc_blend_f32((a <= b) | (b != b), a, b); }}
static inline kc_vi32 kc_vmax_i32(kc_vi32 a, kc_vi32 b) {{ return kc_blend_i32(a > b, a, b); }}
static inline kc_vi32 kc_vmin_i32(kc_vi32 a, kc_vi32 b) {{ return kc_blend_i32(a < b, a, b); }}
/* Division by a divisor the vector loop does not vary (a softmax row's sum): one reciprocal per
 * loop (gcc hoists it) and a multiply per chunk, within 1.5 ulp of the quotient; zeros, infinities
 * and NaN give the quotient's result.  A subnormal divisor, whose reciprocal overflows, divides. */
static inline kc_vf32 kc_divu_f32(kc_vf32 a, float b) {{
    float r = 1.0f / b;
    return (isinf(r) && b != 0.0f) ? a / kc_splat_f32(b) : a * kc_splat_f32(r);
}}
/* Running max/min of a reduction whose accumulator is never NaN (it starts at -inf/+inf): one
 * vmaxps/vminps, which yields its second operand (the accumulator) for a NaN lane of x, as fmax does. */
#if defined(__AVX512F__) && {nbytes} == 64
static inline kc_vf32 kc_rmax_f32(kc_vf32 acc, kc_vf32 x) {{ return (kc_vf32)_mm512_max_ps((__m512)x, (__m512)acc); }}
static inline kc_vf32 kc_rmin_f32(kc_vf32 acc, kc_vf32 x) {{ return (kc_vf32)_mm512_min_ps((__m512)x, (__m512)acc); }}
#elif defined(__AVX__) && {nbytes} == 32
static inline kc_vf32 kc_rmax_f32(kc_vf32 acc, kc_vf32 x) {{ return (kc_vf32)_mm256_max_ps((__m256)x, (__m256)acc); }}
static inline kc_vf32 kc_rmin_f32(kc_vf32 acc, kc_vf32 x) {{ return (kc_vf32)_mm256_min_ps((__m256)x, (__m256)acc); }}
#else
static inline kc_vf32 kc_rmax_f32(kc_vf32 acc, kc_vf32 x) {{ return kc_blend_f32(x > acc, x, acc); }}
static inline kc_vf32 kc_rmin_f32(kc_vf32 acc, kc_vf32 x) {{ return kc_blend_f32(x < acc, x, acc); }}
#endif
/* A vector accumulator's lanes combined in log2(lanes) shuffle steps instead of one scalar
 * operation per lane (+ reassociates, as the numeric policy allows; max/min accumulators are never
 * NaN, see above). */
#if defined(__AVX512F__) && {nbytes} == 64
static inline float kc_hsum_f32(kc_vf32 v) {{ return _mm512_reduce_add_ps((__m512)v); }}
static inline float kc_hmax_f32(kc_vf32 v) {{ return _mm512_reduce_max_ps((__m512)v); }}
static inline float kc_hmin_f32(kc_vf32 v) {{ return _mm512_reduce_min_ps((__m512)v); }}
#elif defined(__AVX__) && {nbytes} == 32
static inline __m128 kc_half_f32(kc_vf32 v) {{ return _mm256_extractf128_ps((__m256)v, 1); }}
static inline __m128 kc_low_f32(kc_vf32 v) {{ return _mm256_castps256_ps128((__m256)v); }}
#define KC_H128(NAME, OP)                                                                  \
    static inline float NAME(kc_vf32 v) {{                                                 \
        __m128 x = OP(kc_low_f32(v), kc_half_f32(v));                                      \
        x = OP(x, _mm_movehl_ps(x, x));                                                    \
        x = OP(x, _mm_shuffle_ps(x, x, 1));                                                \
        return _mm_cvtss_f32(x);                                                           \
    }}
KC_H128(kc_hsum_f32, _mm_add_ps)
KC_H128(kc_hmax_f32, _mm_max_ps)
KC_H128(kc_hmin_f32, _mm_min_ps)
#else
static inline float kc_hsum_f32(kc_vf32 v) {{ float t = v[0]; for (int l = 1; l < {nbytes} / 4; l++) t += v[l]; return t; }}
static inline float kc_hmax_f32(kc_vf32 v) {{ float t = v[0]; for (int l = 1; l < {nbytes} / 4; l++) t = v[l] > t ? v[l] : t; return t; }}
static inline float kc_hmin_f32(kc_vf32 v) {{ float t = v[0]; for (int l = 1; l < {nbytes} / 4; l++) t = v[l] < t ? v[l] : t; return t; }}
#endif
static inline kc_vi32 kc_rmax_i32(kc_vi32 acc, kc_vi32 x) {{ return kc_vmax_i32(acc, x); }}
static inline kc_vi32 kc_rmin_i32(kc_vi32 acc, kc_vi32 x) {{ return kc_vmin_i32(acc, x); }}
#if defined(__AVX512F__) && {nbytes} == 64
/* exp: x = n ln2 + r (Cody-Waite), e^r by Cephes' degree-6 polynomial, 2^n by vscalefps, which
 * rounds once into the subnormal range and saturates to inf; about 1 ulp.  x is clamped to
 * [-104, 89] first (past either end the result is 0 or inf anyway); the clamp keeps NaN. */
static inline kc_vf32 kc_vexp_f32(kc_vf32 x) {{
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), (__m512)x));
    __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return (kc_vf32)_mm512_scalef_ps(y, nf);
}}
#else
/* exp: x = n ln2 + r (Cody-Waite), e^r by Cephes' degree-6 polynomial, 2^n by exponent bits; about
 * 1 ulp; underflows to 0 below -87.3, overflows to inf above 88.7, NaN stays NaN. */
static inline kc_vf32 kc_vexp_f32(kc_vf32 x) {{
    kc_vi32 big = x > kc_splat_f32(88.72283905206835f), tiny = x < kc_splat_f32(-87.33654475055310f);
    kc_vi32 nan = x != x;
    kc_vf32 xc = kc_blend_f32(big | tiny | nan, kc_splat_f32(0.0f), x);
    kc_vf32 t = xc * kc_splat_f32(1.44269504088896341f);
    t = t + kc_blend_f32(t < kc_splat_f32(0.0f), kc_splat_f32(-0.5f), kc_splat_f32(0.5f));
    kc_vi32 n = __builtin_convertvector(t, kc_vi32);
    kc_vf32 nf = __builtin_convertvector(n, kc_vf32);
    kc_vf32 r = xc - nf * kc_splat_f32(0.693359375f) - nf * kc_splat_f32(-2.12194440e-4f);
    kc_vf32 p = kc_splat_f32(1.9875691500e-4f);
    p = p * r + kc_splat_f32(1.3981999507e-3f);
    p = p * r + kc_splat_f32(8.3334519073e-3f);
    p = p * r + kc_splat_f32(4.1665795894e-2f);
    p = p * r + kc_splat_f32(1.6666665459e-1f);
    p = p * r + kc_splat_f32(5.0000001201e-1f);
    kc_vf32 y = p * r * r + r + kc_splat_f32(1.0f);
    kc_vi32 n1 = n >> 1, n2 = n - n1; /* 2^n as 2^n1 * 2^n2: each factor stays a normal float */
    y = y * (kc_vf32)((n1 + kc_splat_i32(127)) << 23) * (kc_vf32)((n2 + kc_splat_i32(127)) << 23);
    y = kc_blend_f32(big, kc_splat_f32(INFINITY), y);
    y = kc_blend_f32(tiny, kc_splat_f32(0.0f), y);
    return kc_blend_f32(nan, x, y);
}}
#endif
#if defined(__AVX512F__) && {nbytes} == 64
/* log: x = m 2^e with m in [sqrt(1/2), sqrt(2)) by vgetmantps/vgetexpps (subnormals included),
 * log(m) = log1p(m - 1) by Cephes' logf polynomial, e ln2 in two parts (Cody-Waite); about 1 ulp.
 * log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN. */
static inline kc_vf32 kc_vlog_f32(kc_vf32 x) {{
    __m512 v = (__m512)x;
    __m512 m = _mm512_getmant_ps(v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    __m512 e = _mm512_getexp_ps(v);
    __mmask16 hi = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237f), _CMP_GE_OQ);
    m = _mm512_mask_mul_ps(m, hi, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, hi, e, _mm512_set1_ps(1.0f));
    __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    __m512 z = _mm512_mul_ps(f, f);
    __m512 p = _mm512_set1_ps(7.0376836292e-2f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.1514610310e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.1676998740e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.2420140846e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.4249322787e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-1.6668057665e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.0000714765e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(-2.4999993993e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(3.3333331174e-1f));
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, f), z);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
    y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
    __m512 r = _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(f, y));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ), v);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_EQ_OQ), _mm512_set1_ps(-INFINITY));
    return (kc_vf32)_mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_set1_ps(NAN));
}}
#else
static inline kc_vf32 kc_vlog_f32(kc_vf32 x) {{
    kc_vf32 r;
    for (int l = 0; l < KC_W; l++) r[l] = logf(x[l]);
    return r;
}}
#endif
static inline kc_vf32 kc_vsigmoid_f32(kc_vf32 x) {{ return kc_splat_f32(1.0f) / (kc_splat_f32(1.0f) + kc_vexp_f32(-x)); }}
/* tanh = sign(x) (1 - 2 / (e^{{2|x|}} + 1)); below |x| < 0.0625 the odd Taylor series (no cancellation) */
static inline kc_vf32 kc_vtanh_f32(kc_vf32 x) {{
    kc_vf32 ax = kc_blend_f32(x < kc_splat_f32(0.0f), -x, x);
    kc_vf32 big = kc_splat_f32(1.0f) - kc_splat_f32(2.0f) / (kc_vexp_f32(ax + ax) + kc_splat_f32(1.0f));
    kc_vf32 x2 = x * x;
    kc_vf32 small = x + x * x2 * (kc_splat_f32(-1.0f / 3) + x2 * (kc_splat_f32(2.0f / 15) + x2 * kc_splat_f32(-17.0f / 315)));
    kc_vf32 signed_big = kc_blend_f32(x < kc_splat_f32(0.0f), -big, big);
    return kc_blend_f32(ax < kc_splat_f32(0.0625f), small, kc_blend_f32(x != x, x, signed_big));
}}
/* erf: Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), odd symmetry */
static inline kc_vf32 kc_verf_f32(kc_vf32 x) {{
    kc_vf32 ax = kc_blend_f32(x < kc_splat_f32(0.0f), -x, x);
    kc_vf32 t = kc_splat_f32(1.0f) / (kc_splat_f32(1.0f) + kc_splat_f32(0.3275911f) * ax);
    kc_vf32 p = kc_splat_f32(1.061405429f);
    p = p * t + kc_splat_f32(-1.453152027f);
    p = p * t + kc_splat_f32(1.421413741f);
    p = p * t + kc_splat_f32(-0.284496736f);
    p = p * t + kc_splat_f32(0.254829592f);
    kc_vf32 y = kc_splat_f32(1.0f) - p * t * kc_vexp_f32(-ax * ax);
    return kc_blend_f32(x != x, x, kc_blend_f32(x < kc_splat_f32(0.0f), -y, y));
}}
"""
