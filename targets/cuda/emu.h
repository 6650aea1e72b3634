/* kcomp CUDA emulation: runs a generated .cu source on the CPU, block by block, each CUDA thread a
 * fiber, with bounds, race and barrier checks.  Built with
 *     g++ -std=gnu++17 -O1 -fPIC -shared -fwrapv -DKC_EMULATED -include emu.h -x c++ kernel.cu
 * and included in exactly one translation unit per library.
 *
 * Contract (all the generated source may use; anything else is a compile error, not a silent gap):
 *   qualifiers   __global__ __device__ __host__ __forceinline__ __launch_bounds__(...) -> nothing;
 *                __shared__ -> static (blocks run one after another, so a function-static array is the
 *                running block's shared memory).  Static shared arrays only (no `extern __shared__`);
 *                they start zeroed, not as garbage, and keep the previous block's values.
 *   types        uint3, dim3 (defaults 1); threadIdx, blockIdx, blockDim, gridDim; warpSize = 32.
 *   barriers     __syncthreads(); __syncwarp(mask) (the warp's existing lanes; the mask is not read).
 *   shuffles     __shfl_sync(mask, v, src, w=32), __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync
 *                for any T of at most 8 bytes (float, double, int, unsigned, long long), PTX's lane
 *                rules: a source outside the lane's segment (or a missing/exited lane) gives its own v.
 *                Every existing lane of the warp must take part: the mask is not read.
 *   atomics      atomicAdd(float*|double*|int*|unsigned*), atomicMax/atomicMin(int*|unsigned*),
 *                atomicExch(float*|int*), atomicCAS(int*|unsigned*), returning the old value.  Fibers
 *                are cooperative, so they are atomic as written; they are not logged, so an atomic
 *                never races (nor is a plain access racing with an atomic one caught).
 *                __threadfence(), __threadfence_block(): no-ops.
 *   host         cudaError_t (cudaSuccess, cudaErrorMemoryAllocation, cudaErrorLaunchFailure),
 *                cudaMalloc (64-byte aligned, filled with 0xFF bytes: NaN / -1, so an unwritten element
 *                shows), cudaFree, cudaMemset, cudaMemcpy(dst, src, n, kind), cudaMemcpyKind,
 *                cudaDeviceSynchronize (returns the pending error without clearing it),
 *                cudaGetLastError (returns and clears), cudaPeekAtLastError, cudaGetErrorString.
 *                A launch that recorded any problem leaves cudaErrorLaunchFailure pending.
 *   launch       KC_LAUNCH(kernel, grid, block, args...) (args free of side effects: each thread
 *                evaluates them): every block, in a random order; in a block,
 *                whenever the running fiber blocks or ends, a random runnable one goes next.  Zero
 *                dimensions, over 1024 threads, block.z > 64 or over 2^32 blocks: recorded, skipped.
 *   accesses     KC_LDG(buf, idx, n), KC_STG(buf, idx, n, v) (global), KC_LDS, KC_STS (shared), on
 *                1-D arrays or pointers: bounds-checked (a bad read gives T(), a bad write is dropped),
 *                logged for the race checker, then done.  Each argument is evaluated once.
 *   races        Shared: two threads touch an address in one barrier interval (between __syncthreads),
 *                one writing.  Global: the same, or the two threads are in different blocks.  Lanes of
 *                one warp separated by a __syncwarp or shuffle are ordered.  Per address the log keeps
 *                the last write and two reads since it, so a race can go unseen when many threads read
 *                first; one report per address per launch.
 *   divergence   threads that exit while others wait at a barrier, or barriers that can never complete
 *                (some lanes at __syncwarp, others at __syncthreads): recorded, the waiters released.
 *   exported     kc_emu_errors() (the problems, one a line, at most 20 kept and "... and K more"),
 *                kc_emu_reset() (clears problems, launch count, pending error; not the RNG),
 *                kc_emu_seed(seed) (the order RNG, seed 1 by default), kc_emu_launches() (KC_LAUNCH
 *                calls since the reset, skipped ones included).
 * One OS thread: a library is not reentrant (two Python threads calling it at once, or a launch from
 * a kernel, is recorded and the second launch skipped).  Nothing throws.  Fiber stacks are 256 KiB
 * with a guard page below: a kernel that overflows one faults instead of corrupting a neighbour. */
#pragma once
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <string>
#include <type_traits>
#include <vector>

/* Hidden: g++ gives inline variables and template statics STB_GNU_UNIQUE binding, which the dynamic
 * linker merges across every library of the process despite RTLD_LOCAL, and two kernel libraries
 * loaded by one Python would then share one problem list and one threadIdx. */
#pragma GCC visibility push(hidden)

#define __global__
#define __device__
#define __host__
#define __forceinline__
#define __launch_bounds__(...)
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline constexpr int warpSize = 32;

typedef enum cudaError { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorLaunchFailure = 719 } cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault
};

namespace kc_emu {

enum { kMaxThreads = 1024, kStackBytes = 256 << 10, kKeptProblems = 20 };
enum FiberState : uint8_t { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
    ucontext_t ctx;
    char* stack;
    uint64_t slot; /* the value a lane offers to a shuffle */
    FiberState state;
};

/* One logged access.  Barrier intervals are numbered across the whole process (a new number at each
 * block start and each __syncthreads), so equal numbers mean the same block and interval, and a
 * shared-memory record from an older interval is simply stale: the log is never swept. */
struct Access {
    uint32_t interval, warp_epoch, block;
    uint16_t thread; /* kNoThread: empty */
};
constexpr uint16_t kNoThread = 0xffff;

struct Entry {
    uintptr_t addr;
    uint32_t gen; /* the launch that wrote it; any other launch's entry is a free slot */
    uint32_t reported;
    Access write, read1, read2;
};

/* Open addressing with generations: clearing at each launch is one increment, not a sweep of what
 * may be millions of entries. */
struct Log {
    Entry* v = nullptr;
    size_t mask = 0, count = 0;
    uint32_t gen = 1;

    static size_t hash(uintptr_t a) {
        uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ull; /* the high bits are the mixed ones */
        return (size_t)(h ^ (h >> 32));
    }
    Entry* slot(Entry* t, size_t m, uintptr_t a) {
        size_t i = hash(a) & m;
        while (t[i].gen == gen && t[i].addr != a) i = (i + 1) & m;
        return &t[i];
    }
    bool grow() {
        size_t cap = mask ? 2 * (mask + 1) : (size_t)1 << 16;
        Entry* t = (Entry*)calloc(cap, sizeof(Entry)); /* gen 0 is never current */
        if (!t) return false;
        for (size_t i = 0; mask && i <= mask; i++)
            if (v[i].gen == gen) *slot(t, cap - 1, v[i].addr) = v[i];
        free(v), v = t, mask = cap - 1;
        return true;
    }
    Entry* get(uintptr_t a) {
        if (2 * (count + 1) > mask + 1 && !grow()) return nullptr;
        Entry* e = slot(v, mask, a);
        if (e->gen != gen) {
            *e = Entry{a, gen, 0, {0, 0, 0, kNoThread}, {0, 0, 0, kNoThread}, {0, 0, 0, kNoThread}};
            count++;
        }
        return e;
    }
    void clear() { gen++, count = 0; } /* wraps after 2^32 launches */
};

struct Emu {
    std::vector<std::string> kept;
    long problems = 0;
    std::string text;
    int launches = 0, busy = 0;
    cudaError_t pending = cudaSuccess;
    uint64_t rng = 1;

    const char* kernel = nullptr;
    Fiber* fibers = nullptr;
    int stacks = 0;
    ucontext_t scheduler;
    std::vector<int> runnable;
    int n = 0, cur = -1; /* threads per block; the running fiber (-1: host code) */
    int at_block = 0, exited = 0, at_warp[32], warp_exited[32];
    uint32_t warp_epoch[32];
    uint32_t block = 0, interval = 0, block_first_interval = 0;
    void (*body)(void*) = nullptr;
    void* closure = nullptr;
    Log log;
};
static Emu g;

static uint64_t random64() { /* splitmix64: tiny, seedable, good enough for shuffling */
    uint64_t z = (g.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__attribute__((format(printf, 1, 2))) static void problem(const char* fmt, ...) {
    g.problems++;
    if (g.kept.size() >= kKeptProblems) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g.kept.emplace_back(buf);
}

static uint3 unflatten(uint32_t linear, dim3 d) {
    return uint3{linear % d.x, linear / d.x % d.y, linear / d.x / d.y};
}
struct Coord { char s[40]; };
static Coord coord(uint32_t linear, dim3 d) {
    Coord c;
    uint3 u = unflatten(linear, d);
    snprintf(c.s, sizeof c.s, "(%u,%u,%u)", u.x, u.y, u.z);
    return c;
}
static Coord here_block() { return coord(g.block, gridDim); }
static Coord here_thread() { return coord((uint32_t)g.cur, blockDim); }

/* ---- the race log ---------------------------------------------------------------------------- */

static uint32_t my_epoch() { return g.warp_epoch[g.cur >> 5]; }

/* Whether `a` and the running thread's access are unordered. */
static bool unordered(const Access& a, bool shared) {
    if (a.thread == kNoThread) return false;
    if (!shared && a.interval < g.block_first_interval) return true; /* an earlier block */
    if (a.interval != g.interval || a.thread == g.cur) return false;
    return !((a.thread >> 5) == (g.cur >> 5) && a.warp_epoch != my_epoch());
}

static void report(const Access& a, bool a_wrote, bool write, bool shared, const char* name, int64_t idx) {
    const char *then = a_wrote ? "wrote" : "read", *now = write ? "wrote" : "read";
    if (a.block != g.block)
        problem("race on global %s[%lld] in %s: block %s thread %s %s, block %s thread %s %s", name,
                (long long)idx, g.kernel, coord(a.block, gridDim).s, coord(a.thread, blockDim).s, then,
                here_block().s, here_thread().s, now);
    else
        problem("race on %s %s[%lld] in %s block %s: thread %s %s, thread %s %s in the same barrier interval",
                shared ? "shared" : "global", name, (long long)idx, g.kernel, here_block().s,
                coord(a.thread, blockDim).s, then, here_thread().s, now);
}

__attribute__((noinline)) static void log_access(uintptr_t addr, bool write, bool shared, const char* name,
                                                 int64_t idx) {
    Entry* e = g.log.get(addr);
    if (!e) return; /* out of memory for the log: check less rather than fail the run */
    if (!e->reported) {
        const Access* other = nullptr;
        if (unordered(e->write, shared))
            other = &e->write;
        else if (write && unordered(e->read1, shared))
            other = &e->read1;
        else if (write && unordered(e->read2, shared))
            other = &e->read2;
        if (other) {
            report(*other, other == &e->write, write, shared, name, idx);
            e->reported = 1;
        }
    }
    Access me = {g.interval, my_epoch(), g.block, (uint16_t)g.cur};
    if (write) {
        e->write = me;
        e->read1.thread = e->read2.thread = kNoThread;
        return;
    }
    /* Keep two distinct readers, so a later writer differs from at least one of them. */
    auto mine = [&](const Access& a) { return a.thread == g.cur && a.block == g.block; };
    auto stale = [&](const Access& a) { return a.thread == kNoThread || (shared && a.interval != g.interval); };
    if (mine(e->read1) || stale(e->read1))
        e->read1 = me;
    else
        e->read2 = me;
}

static void out_of_bounds(const char* what, const char* name, int64_t idx, int64_t n) {
    char where[160] = "host code";
    if (g.cur >= 0)
        snprintf(where, sizeof where, "%s block %s thread %s", g.kernel, here_block().s, here_thread().s);
    problem("out-of-bounds %s of %s[%lld] (size %lld) in %s", what, name, (long long)idx, (long long)n, where);
}

template <class P>
inline auto load(P buf, int64_t idx, int64_t n, const char* name, bool shared)
    -> std::remove_cv_t<std::remove_reference_t<decltype(buf[0])>> {
    if (idx < 0 || idx >= n) {
        out_of_bounds("read", name, idx, n);
        return {};
    }
    if (g.cur >= 0) log_access((uintptr_t)&buf[idx], false, shared, name, idx);
    return buf[idx];
}

template <class P, class V>
inline void store(P buf, int64_t idx, int64_t n, V value, const char* name, bool shared) {
    if (idx < 0 || idx >= n) {
        out_of_bounds("write", name, idx, n);
        return;
    }
    if (g.cur >= 0) log_access((uintptr_t)&buf[idx], true, shared, name, idx);
    buf[idx] = value;
}

/* ---- fibers and barriers --------------------------------------------------------------------- */

static void make_runnable(int i) {
    g.fibers[i].state = kRunnable;
    g.runnable.push_back(i);
}

static void release_block() {
    for (int i = 0; i < g.n; i++)
        if (g.fibers[i].state == kAtBlockBarrier) make_runnable(i);
    g.at_block = 0;
    g.interval++;
}

static void release_warp(int w) {
    for (int i = w * 32; i < g.n && i < w * 32 + 32; i++)
        if (g.fibers[i].state == kAtWarpBarrier) make_runnable(i);
    g.at_warp[w] = 0;
    g.warp_epoch[w]++;
}

static int lanes(int w) { return g.n - w * 32 < 32 ? g.n - w * 32 : 32; }

/* Called on every arrival and exit: a barrier opens once everyone still able to arrive has. */
static void check_block() {
    if (!g.at_block || g.at_block + g.exited < g.n) return;
    if (g.exited)
        problem("barrier divergence in %s block %s: %d of %d threads exited while others wait at __syncthreads",
                g.kernel, here_block().s, g.exited, g.n);
    release_block();
}

static void check_warp(int w) {
    if (!g.at_warp[w] || g.at_warp[w] + g.warp_exited[w] < lanes(w)) return;
    if (g.warp_exited[w])
        problem("barrier divergence in %s block %s: %d of %d lanes of warp %d exited while others wait at"
                " __syncwarp or a shuffle",
                g.kernel, here_block().s, g.warp_exited[w], lanes(w), w);
    release_warp(w);
}

static void wait_block() {
    if (g.cur < 0) return;
    Fiber& f = g.fibers[g.cur];
    f.state = kAtBlockBarrier;
    g.at_block++;
    check_block();
    swapcontext(&f.ctx, &g.scheduler);
}

static void wait_warp() {
    if (g.cur < 0) return;
    Fiber& f = g.fibers[g.cur];
    f.state = kAtWarpBarrier;
    g.at_warp[g.cur >> 5]++;
    check_warp(g.cur >> 5);
    swapcontext(&f.ctx, &g.scheduler);
}

static void fiber_main() {
    g.body(g.closure);
    int i = g.cur;
    g.fibers[i].state = kDone;
    g.exited++;
    g.warp_exited[i >> 5]++;
    check_warp(i >> 5);
    check_block();
} /* returns into uc_link: the scheduler */

static bool map_stacks(int n) {
    if (!g.fibers && !(g.fibers = (Fiber*)calloc(kMaxThreads, sizeof(Fiber)))) return false;
    long page = sysconf(_SC_PAGESIZE);
    for (; g.stacks < n; g.stacks++) {
        void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return false;
        mprotect(p, page, PROT_NONE);
        g.fibers[g.stacks].stack = (char*)p + page;
    }
    return true;
}

/* Stacks go back after every launch: each is two memory maps, and a process loading many kernel
 * libraries would reach Linux's 65530 maps; mapping 256 stacks costs well under a millisecond. */
static void release_stacks() {
    long page = sysconf(_SC_PAGESIZE);
    for (; g.stacks > 0; g.stacks--) munmap(g.fibers[g.stacks - 1].stack - page, kStackBytes + page);
}

/* Out of run_block: getcontext is returns_twice, which would pin run_block's locals (-Wclobbered). */
__attribute__((noinline)) static void start_fiber(int i) {
    Fiber& f = g.fibers[i];
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &g.scheduler;
    makecontext(&f.ctx, fiber_main, 0);
    make_runnable(i);
}

static void run_block(uint32_t b) {
    g.block = b;
    blockIdx = unflatten(b, gridDim);
    g.block_first_interval = ++g.interval;
    g.at_block = g.exited = 0;
    memset(g.at_warp, 0, sizeof g.at_warp);
    memset(g.warp_exited, 0, sizeof g.warp_exited);
    g.runnable.clear();
    for (int i = 0; i < g.n; i++) start_fiber(i);
    for (;;) {
        if (g.runnable.empty()) {
            if (g.exited == g.n) break;
            /* Nobody can run and nobody can arrive: lanes at __syncwarp wait for lanes at
             * __syncthreads and the other way round.  Release all rather than hang. */
            int at_warp = 0;
            for (int w = 0; w < 32; w++) at_warp += g.at_warp[w];
            problem("barrier divergence in %s block %s: %d threads wait at __syncthreads and %d at __syncwarp or"
                    " a shuffle, so none can go on",
                    g.kernel, here_block().s, g.at_block, at_warp);
            for (int w = 0; w < 32; w++)
                if (g.at_warp[w]) release_warp(w);
            if (g.at_block) release_block();
            continue;
        }
        size_t k = random64() % g.runnable.size();
        int i = g.runnable[k];
        g.runnable[k] = g.runnable.back();
        g.runnable.pop_back();
        g.cur = i;
        threadIdx = unflatten((uint32_t)i, blockDim);
        swapcontext(&g.scheduler, &g.fibers[i].ctx);
    }
    g.cur = -1;
}

static void run_launch(const char* name, dim3 grid, dim3 block, void (*body)(void*), void* closure) {
    uint64_t threads = (uint64_t)block.x * block.y * block.z, blocks = (uint64_t)grid.x * grid.y * grid.z;
    if (!threads || !blocks || threads > kMaxThreads || block.z > 64 || blocks > UINT32_MAX) {
        problem("launch of %s skipped: grid (%u,%u,%u) block (%u,%u,%u) (zero dimension, over %d threads per"
                " block, block.z over 64 or over 2^32 blocks)",
                name, grid.x, grid.y, grid.z, block.x, block.y, block.z, (int)kMaxThreads);
        return;
    }
    if (!map_stacks((int)threads)) {
        problem("launch of %s skipped: cannot map %llu fiber stacks", name, (unsigned long long)threads);
        return;
    }
    g.kernel = name, g.n = (int)threads, g.body = body, g.closure = closure;
    gridDim = grid, blockDim = block;
    g.log.clear();
    std::vector<uint32_t> order(blocks);
    for (uint32_t b = 0; b < blocks; b++) { /* inside-out Fisher-Yates */
        uint32_t j = (uint32_t)(random64() % (b + 1));
        order[b] = order[j], order[j] = b;
    }
    for (uint32_t b : order) run_block(b);
    g.kernel = nullptr;
}

template <class F>
static void call(void* closure) {
    (*static_cast<F*>(closure))();
}

template <class F>
inline void launch(const char* name, dim3 grid, dim3 block, F kernel) {
    g.launches++;
    if (__atomic_exchange_n(&g.busy, 1, __ATOMIC_ACQUIRE)) {
        problem("launch of %s skipped: another launch is running (the emulator is one thread: one Python thread"
                " per library, no launches from kernels)",
                name);
        g.pending = cudaErrorLaunchFailure;
        return;
    }
    long before = g.problems;
    run_launch(name, grid, block, &call<F>, &kernel);
    release_stacks();
    if (g.problems != before) g.pending = cudaErrorLaunchFailure;
    __atomic_store_n(&g.busy, 0, __ATOMIC_RELEASE);
}

/* PTX shfl.sync's lane rule (segmask = 32 - width; `up` clamps at the segment's start, the others at
 * its end), then the emulator's own: a lane that does not exist or has exited gives nothing. */
enum ShuffleMode { kIdx, kUp, kDown, kXor };
template <class T>
inline T shuffle(T v, ShuffleMode mode, int b, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move at most 8 bytes");
    if (g.cur < 0) return v;
    memcpy(&g.fibers[g.cur].slot, &v, sizeof(T));
    wait_warp(); /* every lane has offered its value */
    int lane = g.cur & 31, seg = (32 - width) & 31, lo = lane & seg, hi = lo | (31 & ~seg), j = 0;
    bool ok = false;
    b &= 31;
    switch (mode) {
        case kIdx: j = lo | (b & ~seg), ok = j <= hi; break;
        case kUp: j = lane - b, ok = j >= lo; break;
        case kDown: j = lane + b, ok = j <= hi; break;
        case kXor: j = lane ^ b, ok = j <= hi; break;
    }
    int src = (g.cur & ~31) + j;
    T r = v;
    if (ok && src < g.n && g.fibers[src].state != kDone) memcpy(&r, &g.fibers[src].slot, sizeof(T));
    wait_warp(); /* every lane has read before anyone offers again */
    return r;
}

}  // namespace kc_emu

inline void __syncthreads() { kc_emu::wait_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { kc_emu::wait_warp(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
    return kc_emu::shuffle(v, kc_emu::kIdx, src_lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    return kc_emu::shuffle(v, kc_emu::kUp, (int)delta, width);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    return kc_emu::shuffle(v, kc_emu::kDown, (int)delta, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
    return kc_emu::shuffle(v, kc_emu::kXor, lane_mask, width);
}

/* Atomic as written: a fiber is never interrupted inside one. */
#define KC_EMU_RMW(T, name, expr) \
    inline T name(T* p, T v) { T old = *p; *p = (expr); return old; }
KC_EMU_RMW(float, atomicAdd, old + v)
KC_EMU_RMW(double, atomicAdd, old + v)
KC_EMU_RMW(int, atomicAdd, old + v)
KC_EMU_RMW(unsigned, atomicAdd, old + v)
KC_EMU_RMW(int, atomicMax, old > v ? old : v)
KC_EMU_RMW(unsigned, atomicMax, old > v ? old : v)
KC_EMU_RMW(int, atomicMin, old < v ? old : v)
KC_EMU_RMW(unsigned, atomicMin, old < v ? old : v)
KC_EMU_RMW(float, atomicExch, v)
KC_EMU_RMW(int, atomicExch, v)
#undef KC_EMU_RMW
inline int atomicCAS(int* p, int compare, int v) { return *p == compare ? (*p = v, compare) : *p; }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { return *p == c ? (*p = v, c) : *p; }

/* ---- host API -------------------------------------------------------------------------------- */

inline cudaError_t cudaMalloc(void** p, size_t n) {
    size_t bytes = n ? (n + 63) / 64 * 64 : 64; /* aligned_alloc wants a multiple of the alignment */
    *p = aligned_alloc(64, bytes);
    if (!*p) return kc_emu::g.pending = cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);
    return cudaSuccess;
}
template <class T> inline cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc((void**)p, n); }
inline cudaError_t cudaFree(void* p) { return free(p), cudaSuccess; }
inline cudaError_t cudaMemset(void* p, int value, size_t n) { return memset(p, value, n), cudaSuccess; }
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind) {
    return memmove(dst, src, n), cudaSuccess; /* device memory is host memory */
}
inline cudaError_t cudaDeviceSynchronize() { return kc_emu::g.pending; }
inline cudaError_t cudaPeekAtLastError() { return kc_emu::g.pending; }
inline cudaError_t cudaGetLastError() {
    cudaError_t e = kc_emu::g.pending;
    return kc_emu::g.pending = cudaSuccess, e;
}
inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorLaunchFailure: return "unspecified launch failure (see kc_emu_errors)";
    }
    return "unrecognized error code";
}

/* By reference: the closure runs within the launch, and an array argument decays as under nvcc. */
#define KC_LAUNCH(kernel, grid, block, ...) \
    ::kc_emu::launch(#kernel, dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })
#define KC_LDG(buf, idx, n) ::kc_emu::load((buf), (int64_t)(idx), (int64_t)(n), #buf, false)
#define KC_STG(buf, idx, n, value) ::kc_emu::store((buf), (int64_t)(idx), (int64_t)(n), (value), #buf, false)
#define KC_LDS(buf, idx, n) ::kc_emu::load((buf), (int64_t)(idx), (int64_t)(n), #buf, true)
#define KC_STS(buf, idx, n, value) ::kc_emu::store((buf), (int64_t)(idx), (int64_t)(n), (value), #buf, true)

#pragma GCC visibility pop

#define KC_EMU_EXPORT extern "C" __attribute__((visibility("default")))
KC_EMU_EXPORT const char* kc_emu_errors(void) {
    using kc_emu::g;
    g.text.clear();
    for (const std::string& m : g.kept) g.text += (g.text.empty() ? "" : "\n") + m;
    char more[64];
    snprintf(more, sizeof more, "\n... and %ld more", g.problems - (long)g.kept.size());
    if (g.problems > (long)g.kept.size()) g.text += more;
    return g.text.c_str();
}
KC_EMU_EXPORT void kc_emu_reset(void) {
    kc_emu::g.kept.clear();
    kc_emu::g.problems = 0, kc_emu::g.launches = 0, kc_emu::g.pending = cudaSuccess;
}
KC_EMU_EXPORT void kc_emu_seed(unsigned long long seed) { kc_emu::g.rng = seed; }
KC_EMU_EXPORT int kc_emu_launches(void) { return kc_emu::g.launches; }
#undef KC_EMU_EXPORT
