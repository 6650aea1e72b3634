/* The numeric policy's helpers (kcomp/semantics.py is the definition), shared by the C-family
 * targets: the includer defines KC_INLINE (`static inline` for C, with `__host__ __device__` for CUDA).
 *
 * Integers: `/` truncates toward zero, `//` and `%` are floor division and floor modulo (Python's),
 * overflow wraps (the library is built with -fwrapv).  Division by zero yields 0 and x / -1 wraps
 * (numpy's results) instead of trapping.  Float `//` and `%` follow numpy's npy_divmod exactly.
 * Everything is inline: with a constant divisor the compiler folds the special cases away.
 * Comparisons with a NaN are plain `<` (false, as isless gives): isless is host-only in CUDA.
 */
/* Float max/min are numpy's fmax/fmin: a NaN operand yields the other one.  gcc calls libm's fmaxf
 * for them unless math is finite-only, and that call cost ~12 ns on one Xeon session (a third of a
 * 256x256 softmax: a row's lanes are combined by it); a compare and a select stay inline. */
KC_INLINE float kc_fmaxf(float a, float b) { return (a >= b || b != b) ? a : b; }
KC_INLINE float kc_fminf(float a, float b) { return (a <= b || b != b) ? a : b; }
KC_INLINE double kc_fmax(double a, double b) { return (a >= b || b != b) ? a : b; }
KC_INLINE double kc_fmin(double a, double b) { return (a <= b || b != b) ? a : b; }

#define KC_INT_HELPERS(S, T, UT)                                                 \
    KC_INLINE T kc_neg_##S(T a) { return (T)(0u - (UT)a); }                      \
    KC_INLINE T kc_div_##S(T a, T b) {                                           \
        if (b == 0) return 0;                                                    \
        if (b == -1) return kc_neg_##S(a);                                       \
        return a / b;                                                            \
    }                                                                            \
    KC_INLINE T kc_floordiv_##S(T a, T b) {                                      \
        if (b == 0) return 0;                                                    \
        if (b == -1) return kc_neg_##S(a);                                       \
        T q = a / b;                                                             \
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;                 \
    }                                                                            \
    KC_INLINE T kc_mod_##S(T a, T b) {                                           \
        if (b == 0 || b == -1) return 0;                                         \
        T r = a % b;                                                             \
        return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;                     \
    }                                                                            \
    KC_INLINE T kc_max_##S(T a, T b) { return a > b ? a : b; }                   \
    KC_INLINE T kc_min_##S(T a, T b) { return a < b ? a : b; }                   \
    KC_INLINE T kc_abs_##S(T a) { return a < 0 ? kc_neg_##S(a) : a; }            \
    KC_INLINE T kc_pow_##S(T a, T b) {                                           \
        if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;         \
        UT r = 1, x = (UT)a;                                                     \
        for (; b; b >>= 1, x *= x)                                               \
            if (b & 1) r *= x;                                                   \
        return (T)r;                                                             \
    }

KC_INT_HELPERS(i32, int32_t, uint32_t)
KC_INT_HELPERS(i64, int64_t, uint64_t)

#define KC_FLOAT_HELPERS(S, T, F)                                                \
    KC_INLINE T kc_floordiv_##S(T a, T b) {                                      \
        if (!b) return a / b;                                                    \
        T mod = fmod##F(a, b);                                                   \
        T div = (a - mod) / b;                                                   \
        if (mod) {                                                               \
            if ((b < 0) != (mod < 0)) div -= (T)1;                               \
        }                                                                        \
        if (!div) return copysign##F(0, a / b);                                  \
        T fl = floor##F(div);                                                    \
        return (div - fl > (T)0.5) ? fl + (T)1 : fl;                             \
    }                                                                            \
    KC_INLINE T kc_mod_##S(T a, T b) {                                           \
        T mod = fmod##F(a, b);                                                   \
        if (!b) return mod;                                                      \
        if (mod) {                                                               \
            if ((b < 0) != (mod < 0)) mod += b;                                  \
        } else {                                                                 \
            mod = copysign##F(0, b);                                             \
        }                                                                        \
        return mod;                                                              \
    }

KC_FLOAT_HELPERS(f32, float, f)
KC_FLOAT_HELPERS(f64, double, )
