/* kcomp C prelude of the CPU target: includes, heap temporaries; the numeric helpers follow it
 * (targets/cfamily/numeric.h, shared with the CUDA target). */
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

#define KC_INLINE static inline
