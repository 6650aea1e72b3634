/* kcomp C prelude: the numeric policy's helpers (kcomp/semantics.py is the definition).
 *
 * Integers: `/` truncates toward zero, `//` and `%` are floor division and floor modulo (Python's),
 * overflow wraps (the library is built with -fwrapv).  Division by zero yields 0 and x / -1 wraps
 * (numpy's results) instead of trapping.  Float `//` and `%` follow numpy's npy_divmod exactly.
 * Everything is static inline: with a constant divisor gcc folds the special cases away.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <omp.h>

#define KC_ABI_VERSION 1

/* Heap temporaries.  A large one (an attention score matrix, a packed panel) is kept in a slot for
 * the next call instead of being returned to the system: freshly mapped pages fault and are zeroed
 * by the kernel on first touch, which costs about as much as the copy that fills them.  A slot is
 * claimed with an atomic flag, so concurrent calls each get their own block (or a plain one when
 * every slot is busy); blocks stay until the library is unloaded. */
#define KC_KEEP_BYTES (64 << 10)
#define KC_SLOTS 16
static struct { void *p; size_t n; int busy; } kc_slots[KC_SLOTS];

static inline void *kc_alloc(int64_t bytes) {
    size_t n = (size_t)(bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple of the alignment */
    n = n ? n : 64;
    if (n >= KC_KEEP_BYTES) {
        for (int s = 0; s < KC_SLOTS; s++) {
            int idle = 0;
            if (!__atomic_compare_exchange_n(&kc_slots[s].busy, &idle, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) continue;
            if (kc_slots[s].p && kc_slots[s].n == n) return kc_slots[s].p;
            if (!kc_slots[s].p) {
                void *p = aligned_alloc(64, n);
                if (!p) abort();
                kc_slots[s].n = n;
                __atomic_store_n(&kc_slots[s].p, p, __ATOMIC_RELEASE);
                return p;
            }
            __atomic_store_n(&kc_slots[s].busy, 0, __ATOMIC_RELEASE); /* another size's block */
        }
    }
    void *p = aligned_alloc(64, n);
    if (!p) abort();
    return p;
}

static inline void kc_free(void *p) {
    for (int s = 0; s < KC_SLOTS; s++) {
        if (__atomic_load_n(&kc_slots[s].p, __ATOMIC_ACQUIRE) == p) {
            __atomic_store_n(&kc_slots[s].busy, 0, __ATOMIC_RELEASE);
            return;
        }
    }
    free(p);
}

/* Float max/min are numpy's fmax/fmin: a NaN operand yields the other one.  gcc calls libm's fmaxf
 * for them unless math is finite-only, and that call cost ~12 ns on one Xeon session (a third of a
 * 256x256 softmax: a row's lanes are combined by it); a compare and a select stay inline. */
static inline float kc_fmaxf(float a, float b) { return (a >= b || b != b) ? a : b; }
static inline float kc_fminf(float a, float b) { return (a <= b || b != b) ? a : b; }
static inline double kc_fmax(double a, double b) { return (a >= b || b != b) ? a : b; }
static inline double kc_fmin(double a, double b) { return (a <= b || b != b) ? a : b; }

#define KC_INT_HELPERS(S, T, UT)                                                     \
    static inline T kc_neg_##S(T a) { return (T)(0u - (UT)a); }                      \
    static inline T kc_div_##S(T a, T b) {                                           \
        if (b == 0) return 0;                                                        \
        if (b == -1) return kc_neg_##S(a);                                           \
        return a / b;                                                                \
    }                                                                                \
    static inline T kc_floordiv_##S(T a, T b) {                                      \
        if (b == 0) return 0;                                                        \
        if (b == -1) return kc_neg_##S(a);                                           \
        T q = a / b;                                                                 \
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;                     \
    }                                                                                \
    static inline T kc_mod_##S(T a, T b) {                                           \
        if (b == 0 || b == -1) return 0;                                             \
        T r = a % b;                                                                 \
        return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;                         \
    }                                                                                \
    static inline T kc_max_##S(T a, T b) { return a > b ? a : b; }                   \
    static inline T kc_min_##S(T a, T b) { return a < b ? a : b; }                   \
    static inline T kc_abs_##S(T a) { return a < 0 ? kc_neg_##S(a) : a; }            \
    static inline T kc_pow_##S(T a, T b) {                                           \
        if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;             \
        UT r = 1, x = (UT)a;                                                         \
        for (; b; b >>= 1, x *= x)                                                   \
            if (b & 1) r *= x;                                                       \
        return (T)r;                                                                 \
    }

KC_INT_HELPERS(i32, int32_t, uint32_t)
KC_INT_HELPERS(i64, int64_t, uint64_t)

#define KC_FLOAT_HELPERS(S, T, F)                                                    \
    static inline T kc_floordiv_##S(T a, T b) {                                      \
        if (!b) return a / b;                                                        \
        T mod = fmod##F(a, b);                                                       \
        T div = (a - mod) / b;                                                       \
        if (mod) {                                                                   \
            if (isless(b, 0) != isless(mod, 0)) div -= (T)1;                         \
        }                                                                            \
        if (!div) return copysign##F(0, a / b);                                      \
        T fl = floor##F(div);                                                        \
        return isgreater(div - fl, (T)0.5) ? fl + (T)1 : fl;                         \
    }                                                                                \
    static inline T kc_mod_##S(T a, T b) {                                           \
        T mod = fmod##F(a, b);                                                       \
        if (!b) return mod;                                                          \
        if (mod) {                                                                   \
            if (isless(b, 0) != isless(mod, 0)) mod += b;                            \
        } else {                                                                     \
            mod = copysign##F(0, b);                                                 \
        }                                                                            \
        return mod;                                                                  \
    }

KC_FLOAT_HELPERS(f32, float, f)
KC_FLOAT_HELPERS(f64, double, )
