"""The SIMD vocabulary of emitted C: GCC vector types and a few helpers, for one vector width.

Vectors are GCC vector extensions (`typedef float kc_vf32 __attribute__((vector_size(32)))`), so
`+ - * /` and comparisons are plain operators and the instruction set comes from the compiler flags
(`-march=x86-64-v3` gives AVX2 + FMA: `a * b + c` contracts to vfmadd under -ffp-contract=fast).
Loads and stores go through memcpy (unaligned, compiled to one vmovups) or a dereference when the
address is known to be aligned; partial vectors (remainders) use AVX-512 / AVX2 masked moves when the
target has them and a lane-count memcpy otherwise.  A broadcast is an initializer list, not `0 + x`
(which gcc may not fold without -ffast-math).  fmax/fmin keep numpy's NaN-ignoring rule via blends.

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
"""
