/* emu_flash.cpp — runs the attention kernels' own source on the CPU, without a GPU, and checks
 * them against cd_attention_reference: the shipped kernel (src/backend/cuda/attn_v2_flash.cuh with
 * attn_flash_common.cuh) and the lab's versions (lab/attention/attn_v3_flash.cuh,
 * attn_v1_naive.cuh).
 *
 * Every GPU thread of a CTA is a cooperative fiber (ucontext); the PTX wrappers of the flash
 * kernel are replaced (CD_FLASH_EMULATE) by warp-level emulations written from the PTX ISA:
 *   ldmatrix .x4 [.trans], mma.m16n8k16.row.col bf16 -> f32 (fragment layouts of the ISA),
 *   cp.async with real asynchrony (a copy lands only at the issuing thread's cp.async.wait_group,
 *   so a read before the wait or a missing barrier shows up as stale / NaN-poisoned data),
 *   shfl.xor, bar.sync. Shared memory starts as NaN bit patterns.
 * Slow (a context switch per lane per collective): meant for small shapes, as a pre-flight check
 * of fragment layouts, indexing, masks and barriers before a kernel meets a GPU.
 *
 * build (after make, from the repository root; the library's own link flags):
 *   g++ -std=c++17 -O2 -Wno-unknown-pragmas -Iinclude -Isrc/backend/cuda lab/attention/emu_flash.cpp \
 *       build/libcleardit.a -fopenmp <the Makefile's LDLIBS> -o build/emu_flash
 * Cases with cd_cuda_attention_bf16_ex's options (image row ranges, text rows over a key suffix;
 * patch parallelism) run first, also under --quick: computed rows against the reference (text rows
 * over [text_key0, N) against a sliced dense reference), rows left out must stay NaN.
 * usage: emu_flash [--quick]   (EMU_VARIANTS=2,3 to pick variants); exit status 1 when a case
 * fails. The full run takes ~2.5 min on 2 cores, --quick ~30 s. */
#define CD_FLASH_EMULATE 1

#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>
#include <ucontext.h>

extern "C" {
#include "cleardit.h"
}
#include "../../src/ops/attn.h"

/* ---- CUDA spellings on the host --------------------------------------------------------- */
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n)
#define __restrict__
struct emu_dim3 {
    unsigned x, y, z;
};
struct float2 {
    float x, y;
};
static inline float2 make_float2(float a, float b) { return float2{a, b}; }
static inline float __uint_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t __float_as_uint(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __fdividef(float a, float b) { return a / b; }
using std::max;
using std::min;

/* ---- fibers ------------------------------------------------------------------------------ */
namespace emu {
struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done;
    /* cp.async: copies of the open group, committed groups (oldest first) */
    struct Copy {
        uint32_t dst;
        const void *src;
        int bytes;
    };
    std::vector<Copy> open;
    std::deque<std::vector<Copy>> groups; /* an eager group is stored empty (it has landed) */
};
struct Barrier {
    int count = 0, expected = 0;
    long generation = 0;
};

static std::vector<Fiber> fibers;
static int cur = -1; /* running fiber = thread index */
static ucontext_t sched;
static emu_dim3 bidx;
static long progress = 0;
static std::function<void()> body;
static unsigned char *smem_base;
static size_t smem_bytes;
static Barrier block_bar;
static Barrier warp_bar[32];
struct Slot {
    uint32_t u[8];
    float f[4];
};
static Slot slots[32][32]; /* [warp][lane] */
static long collectives = 0;

static uint64_t sched_rng = 0x9e3779b97f4a7c15ull;
static int coin(int n) { /* uniform in [0, n) */
    sched_rng ^= sched_rng << 13;
    sched_rng ^= sched_rng >> 7;
    sched_rng ^= sched_rng << 17;
    return (int)((sched_rng >> 33) % (uint64_t)n);
}

static void yield() { swapcontext(&fibers[cur].ctx, &sched); }

static void wait(Barrier &b) {
    const long gen = b.generation;
    if (++b.count == b.expected) {
        b.count = 0;
        b.generation++;
        progress++;
        return;
    }
    while (b.generation == gen) yield();
}

static void entry() {
    body();
    fibers[cur].done = true;
    progress++;
    /* returning switches to uc_link = sched */
}

/* Runs one CTA of nthreads threads; fails (exit) on a deadlock. */
static void run_block(int nthreads, emu_dim3 b, const std::function<void()> &fn) {
    bidx = b;
    body = fn;
    fibers.assign(nthreads, Fiber());
    block_bar = Barrier();
    block_bar.expected = nthreads;
    for (int w = 0; w < 32; w++) {
        warp_bar[w] = Barrier();
        warp_bar[w].expected = 32;
    }
    for (int t = 0; t < nthreads; t++) {
        Fiber &f = fibers[t];
        f.done = false;
        f.stack.resize(256 * 1024);
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = &sched;
        makecontext(&f.ctx, entry, 0);
    }
    for (;;) {
        bool alive = false;
        const long before = progress;
        for (int rounds = 0; rounds < 64; rounds++)
            for (int t = 0; t < nthreads; t++) {
                if (fibers[t].done) continue;
                alive = true;
                if (coin(4) == 0) continue; /* perturb the interleaving of warps */
                cur = t;
                swapcontext(&sched, &fibers[t].ctx);
                cur = -1;
            }
        if (!alive) break;
        if (progress == before) {
            fprintf(stderr, "emu: deadlock (no barrier completes) in block (%u,%u)\n", b.x, b.y);
            exit(3);
        }
    }
    for (int t = 0; t < nthreads; t++)
        if (!fibers[t].open.empty() || !fibers[t].groups.empty()) {
            /* uncommitted or unwaited copies at exit are legal PTX but suspicious here */
            fprintf(stderr, "emu: thread %d exits with %zu open copies, %zu groups pending\n", t, fibers[t].open.size(),
                    fibers[t].groups.size());
            exit(3);
        }
}

static uint16_t sm16(uint32_t addr) {
    if (addr % 2 || addr + 2 > smem_bytes) {
        fprintf(stderr, "emu: shared read out of bounds at %u\n", addr);
        exit(3);
    }
    uint16_t v;
    memcpy(&v, smem_base + addr, 2);
    return v;
}
} /* namespace emu */

static emu_dim3 emu_tidx() { return emu_dim3{(unsigned)emu::cur, 0, 0}; }
#define threadIdx (emu_tidx())
#define blockIdx (emu::bidx)

static void __syncthreads() { emu::wait(emu::block_bar); }

static float __shfl_xor_sync(unsigned mask, float v, int off) {
    (void)mask;
    const int t = emu::cur, w = t >> 5, lane = t & 31;
    emu::slots[w][lane].f[0] = v;
    emu::wait(emu::warp_bar[w]);
    const float r = emu::slots[w][lane ^ off].f[0];
    emu::wait(emu::warp_bar[w]);
    return r;
}

/* ---- the PTX wrappers (attn_flash_common.cuh names them; declared in its namespace) --- */
namespace cd_flash {
uint16_t smem_storage[4 * 64 * (128 + 8)] __attribute__((aligned(128)));

static inline uint32_t smem_addr(const void *p) {
    const unsigned char *c = (const unsigned char *)p;
    assert(c >= emu::smem_base && c <= emu::smem_base + emu::smem_bytes);
    return (uint32_t)(c - emu::smem_base);
}
static inline void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    if (dst % 16 || dst + 16 > emu::smem_bytes || ((uintptr_t)src % 16) || (src_bytes != 0 && src_bytes != 16)) {
        fprintf(stderr, "emu: bad cp.async dst %u src %p bytes %d\n", dst, src, src_bytes);
        exit(3);
    }
    emu::fibers[emu::cur].open.push_back({dst, src, src_bytes});
}
static void land(const std::vector<emu::Fiber::Copy> &g) {
    for (const auto &c : g) {
        if (c.bytes)
            memcpy(emu::smem_base + c.dst, c.src, 16);
        else
            memset(emu::smem_base + c.dst, 0, 16);
    }
}
/* A committed group lands either at once (eager: shows a buffer refilled while others still read
 * it) or only at the wait that retires it (lazy: shows a read before the wait), by coin toss. */
static inline void cp_async_commit() {
    emu::Fiber &f = emu::fibers[emu::cur];
    if (emu::coin(2)) {
        land(f.open);
        f.open.clear();
    }
    f.groups.push_back(f.open);
    f.open.clear();
}
template <int N> static inline void cp_async_wait() {
    emu::Fiber &f = emu::fibers[emu::cur];
    while ((int)f.groups.size() > N) {
        land(f.groups.front());
        f.groups.pop_front();
    }
}

/* ldmatrix .m8n8 .x4 .b16: lanes 8i..8i+7 give the row addresses of matrix i; register i of
 * lane L gets row L/4, columns 2(L%4), 2(L%4)+1 of matrix i (low half = lower column); .trans:
 * rows 2(L%4), 2(L%4)+1 of column L/4. */
static void ldsm_common(uint32_t (&r)[4], uint32_t addr, bool trans) {
    const int t = emu::cur, w = t >> 5, lane = t & 31;
    if (addr % 16) {
        fprintf(stderr, "emu: ldmatrix row address %u not 16-byte aligned\n", addr);
        exit(3);
    }
    emu::slots[w][lane].u[0] = addr;
    emu::wait(emu::warp_bar[w]);
    emu::collectives++;
    for (int i = 0; i < 4; i++) {
        uint16_t lo, hi;
        if (!trans) {
            const uint32_t row = emu::slots[w][8 * i + lane / 4].u[0];
            lo = emu::sm16(row + 2 * (2 * (lane % 4)));
            hi = emu::sm16(row + 2 * (2 * (lane % 4) + 1));
        } else {
            lo = emu::sm16(emu::slots[w][8 * i + 2 * (lane % 4)].u[0] + 2 * (lane / 4));
            hi = emu::sm16(emu::slots[w][8 * i + 2 * (lane % 4) + 1].u[0] + 2 * (lane / 4));
        }
        r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
    emu::wait(emu::warp_bar[w]);
}
static inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { ldsm_common(r, addr, false); }
static inline void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) { ldsm_common(r, addr, true); }

static inline float bf(uint32_t bits16) { return __uint_as_float((bits16 & 0xffffu) << 16); }

/* mma.m16n8k16.row.col.f32.bf16.bf16.f32, g = lane>>2, t = lane&3:
 * A: reg0 (g, 2t..2t+1), reg1 (g+8, 2t..), reg2 (g, 2t+8..), reg3 (g+8, 2t+8..)
 * B: reg0 (k 2t..2t+1, n g), reg1 (k 2t+8..2t+9, n g)
 * C/D: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1) */
static void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    const int t = emu::cur, w = t >> 5, lane = t & 31;
    emu::Slot &s = emu::slots[w][lane];
    for (int i = 0; i < 4; i++) s.u[i] = a[i], s.f[i] = c[i];
    s.u[4] = b0;
    s.u[5] = b1;
    emu::wait(emu::warp_bar[w]);
    float A[16][16], B[16][8], C[16][8];
    for (int L = 0; L < 32; L++) {
        const emu::Slot &o = emu::slots[w][L];
        const int g = L >> 2, tt = L & 3;
        const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * tt, 2 * tt, 2 * tt + 8, 2 * tt + 8};
        for (int i = 0; i < 4; i++) {
            A[rows[i]][cols[i]] = bf(o.u[i]);
            A[rows[i]][cols[i] + 1] = bf(o.u[i] >> 16);
        }
        B[2 * tt][g] = bf(o.u[4]);
        B[2 * tt + 1][g] = bf(o.u[4] >> 16);
        B[2 * tt + 8][g] = bf(o.u[5]);
        B[2 * tt + 9][g] = bf(o.u[5] >> 16);
        C[g][2 * tt] = o.f[0];
        C[g][2 * tt + 1] = o.f[1];
        C[g + 8][2 * tt] = o.f[2];
        C[g + 8][2 * tt + 1] = o.f[3];
    }
    const int g = lane >> 2, tt = lane & 3;
    const int orow[4] = {g, g, g + 8, g + 8}, ocol[4] = {2 * tt, 2 * tt + 1, 2 * tt, 2 * tt + 1};
    float out[4];
    for (int i = 0; i < 4; i++) {
        double acc = C[orow[i]][ocol[i]];
        for (int k = 0; k < 16; k++) acc += (double)A[orow[i]][k] * (double)B[k][ocol[i]];
        out[i] = (float)acc;
    }
    emu::wait(emu::warp_bar[w]);
    for (int i = 0; i < 4; i++) c[i] = out[i];
}
static void mma_bf16_nv(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { mma_bf16(c, a, b0, b1); }

static inline uint16_t rne_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline uint32_t pack_bf16(float lo, float hi) { return (uint32_t)rne_bf16(lo) | ((uint32_t)rne_bf16(hi) << 16); }
static inline float ex2(float x) { return exp2f(x); }
} /* namespace cd_flash */

/* v3's kernel (namespace cd_flash3) declares its own `smem`: 4 K/V buffers of 64 x (128 + 8)
 * and a Q tile of up to 256 x (128 + 8), then the key schedule (< 1 KB) */
namespace cd_flash3 {
uint16_t smem_storage[(4 * 64 + 256) * (128 + 8) + 512] __attribute__((aligned(128)));
}

/* the kernel's dynamic shared memory `extern __shared__ uint16_t smem[]` becomes
 * cd_flash::smem_storage (v3: cd_flash3::smem_storage) */
#define smem smem_storage
#include "attn_v1_naive.cuh"
#include "attn_v2_flash.cuh"
#include "attn_v3_flash.cuh"
#undef smem

/* ---- the launches (the same grid arithmetic as attn_launch.cuh) ----------------------------- */
template <int HD, int QR, int QC, bool PIPE = false> static void emu_flash(cd_attn_kparams p, int NH) {
    using C = cd_flash::Cfg<HD, QR, QC>;
    const long long ctas = cd_attn_flash_grid(p, C::BM, QR, QC);
    emu::smem_base = (unsigned char *)cd_flash::smem_storage;
    emu::smem_bytes = C::SMEM;
    for (int h = 0; h < NH; h++)
        for (long long b = 0; b < ctas; b++) {
            memset(cd_flash::smem_storage, 0xff, sizeof cd_flash::smem_storage); /* NaN */
            emu::run_block(C::NT, emu_dim3{(unsigned)b, (unsigned)h, 0},
                           [&] { cd_flash::cd_attn_flash_kernel<HD, QR, QC, PIPE>(p); });
        }
}

template <int HD, int QR, int QC, int MT> static void emu_flash3(cd_attn_kparams p, int NH) {
    using C = cd_flash3::Cfg<HD, QR, QC, MT>;
    static_assert(C::SMEM <= sizeof cd_flash3::smem_storage, "emulator shared memory too small");
    const long long ctas = cd_attn_flash_grid(p, C::BM, QR, QC);
    emu::smem_base = (unsigned char *)cd_flash3::smem_storage;
    emu::smem_bytes = C::SMEM;
    for (int h = 0; h < NH; h++)
        for (long long b = 0; b < ctas; b++) {
            memset(cd_flash3::smem_storage, 0xff, sizeof cd_flash3::smem_storage); /* NaN */
            emu::run_block(C::NT, emu_dim3{(unsigned)b, (unsigned)h, 0},
                           [&] { cd_flash3::cd_attn_flash3_kernel<HD, QR, QC, MT>(p); });
        }
}

template <int HD> static void emu_naive(cd_attn_kparams p, int NH) {
    const long long nb = ((long long)p.N + CD_NAIVE_WARPS - 1) / CD_NAIVE_WARPS;
    for (int h = 0; h < NH; h++)
        for (long long b = 0; b < nb; b++)
            emu::run_block(CD_NAIVE_WARPS * 32, emu_dim3{(unsigned)b, (unsigned)h, 0},
                           [&] { cd_attn_naive_kernel<HD>(p); });
}

template <int HD> static void emu_run(int variant, const cd_attn_kparams &p, int NH) {
    switch (variant) {
        case 1: emu_naive<HD>(p, NH); break;
        case 2: emu_flash<HD, 4, 16>(p, NH); break;
        case 3: emu_flash<HD, 8, 16>(p, NH); break;
        case 4: emu_flash<HD, 2, 32>(p, NH); break;
        case 5: emu_flash<HD, 1, 64>(p, NH); break;
        case 6: emu_flash<HD, 4, 32>(p, NH); break;
        case 7: emu_flash3<HD, 4, 32, 2>(p, NH); break;
        case 8: emu_flash3<HD, 8, 16, 2>(p, NH); break;
        case 9: emu_flash3<HD, 2, 32, 2>(p, NH); break;
        case 10: emu_flash3<HD, 8, 32, 2>(p, NH); break;
        case 11: emu_flash<HD, 2, 32, true>(p, NH); break;
        case 12: emu_flash<HD, 4, 16, true>(p, NH); break;
        default: abort();
    }
}
static const char *vname[] = {"",       "naive",  "4x16",   "8x16",   "2x32",    "1x64",   "4x32",
                              "3_4x32", "3_8x16", "3_2x32", "3_8x32", "2p_2x32", "2p_4x16"};

/* ---- cases -------------------------------------------------------------------------------- */
static uint64_t rng = 88172645463325252ull;
static double urand() { /* [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static uint16_t to_bf16(float f) { return cd_flash::rne_bf16(f); }

struct Case {
    int NH, HD, T, H, W, r, down;
};

/* cd_cuda_attention_bf16_ex's options (attn_kparams.cuh): text rows computed or not, over the keys
 * [text_key0, N); image rows [row0, row1) only. The rows left out must stay unwritten (NaN). */
struct Opts {
    int text_q, text_key0, row0, row1;
};

/* Reference of the text queries over the keys [k0, N) only, by slicing: dense problems (no text,
 * one row of N - k0 tokens) whose keys are k[k0, N) and whose first queries are the text queries,
 * N - k0 of them at a time. o [NH][N][HD], lse [NH][N]: text rows written. */
static int text_slice_reference(cd_ctx *ctx, const cd_attn_desc &d, int k0, const std::vector<uint16_t> &q,
                                const std::vector<uint16_t> &k, const std::vector<uint16_t> &v, std::vector<float> &o,
                                std::vector<float> &lse) {
    const size_t N = cd_attn_tokens(&d), HD = (size_t)d.head_dim, NH = (size_t)d.heads;
    const size_t N2 = N - (size_t)k0;
    cd_attn_desc d2 = d;
    d2.text_len = 0;
    d2.grid_h = 1;
    d2.grid_w = (int)N2;
    d2.radius = 0;
    d2.down = 0;
    d2.scale = 1.0f / sqrtf((float)d.head_dim);
    std::vector<uint16_t> q2(NH * N2 * HD, 0), k2(q2.size()), v2(q2.size());
    std::vector<float> o2(q2.size()), l2(NH * N2);
    for (size_t h = 0; h < NH; h++) {
        memcpy(&k2[h * N2 * HD], &k[(h * N + k0) * HD], N2 * HD * 2);
        memcpy(&v2[h * N2 * HD], &v[(h * N + k0) * HD], N2 * HD * 2);
    }
    for (size_t c0 = 0; c0 < (size_t)d.text_len; c0 += N2) {
        const size_t cnt = std::min(N2, (size_t)d.text_len - c0);
        for (size_t h = 0; h < NH; h++) memcpy(&q2[h * N2 * HD], &q[(h * N + c0) * HD], cnt * HD * 2);
        if (cd_attention_reference(ctx, &d2, CD_DTYPE_BF16, q2.data(), k2.data(), v2.data(), NULL, o2.data(),
                                   l2.data())) {
            fprintf(stderr, "sliced reference: %s\n", cd_ctx_error(ctx));
            return 1;
        }
        for (size_t h = 0; h < NH; h++) {
            memcpy(&o[(h * N + c0) * HD], &o2[h * N2 * HD], cnt * HD * 4);
            memcpy(&lse[h * N + c0], &l2[h * N2], cnt * 4);
        }
    }
    return 0;
}

static int run_case(cd_ctx *ctx, const Case &c, const std::vector<int> &variants, const Opts *opt = nullptr) {
    cd_attn_desc d;
    memset(&d, 0, sizeof d);
    d.heads = c.NH;
    d.head_dim = c.HD;
    d.text_len = c.T;
    d.grid_h = c.H;
    d.grid_w = c.W;
    d.radius = c.r;
    d.down = c.down;
    const size_t N = cd_attn_tokens(&d), n = (size_t)c.NH * N * c.HD;
    std::vector<uint16_t> q(n), k(n), v(n);
    for (size_t i = 0; i < n; i++) {
        q[i] = to_bf16((float)(4 * urand() - 2));
        k[i] = to_bf16((float)(4 * urand() - 2));
        v[i] = to_bf16((float)(2 * urand() - 1));
    }
    const int pooled = cd_attn_pooled(&d), DF = pooled ? c.down : 1;
    std::vector<float> sw(DF * DF);
    for (auto &x : sw) x = (float)((0.5 + urand()) / (DF * DF));
    std::vector<float> oref(n), lref((size_t)c.NH * N);
    if (cd_attention_reference(ctx, &d, CD_DTYPE_BF16, q.data(), k.data(), v.data(), sw.data(), oref.data(),
                               lref.data())) {
        fprintf(stderr, "reference: %s\n", cd_ctx_error(ctx));
        return 1;
    }
    /* which rows the call computes; text rows over keys [k0, N) come from a sliced reference */
    std::vector<char> want((size_t)c.NH * N, 1);
    if (opt) {
        for (int h = 0; h < c.NH; h++)
            for (size_t i = 0; i < N; i++) {
                const long long y = i < (size_t)c.T ? -1 : (long long)(i - c.T) / c.W;
                want[(size_t)h * N + i] = i < (size_t)c.T ? (char)opt->text_q : (char)(y >= opt->row0 && y < opt->row1);
            }
        if (opt->text_q && opt->text_key0 > 0 && c.T > 0 &&
            text_slice_reference(ctx, d, opt->text_key0, q, k, v, oref, lref))
            return 1;
    }
    /* extra keys: text, then pooled (double sums of the bf16 keys, rounded to bf16) */
    const int PW = c.W / DF, NP = pooled ? (c.H / DF) * PW : 0;
    const int E = c.r > 0 ? c.T + NP : 0;
    std::vector<uint16_t> ek((size_t)c.NH * E * c.HD + 8), ev(ek.size());
    for (int h = 0; h < c.NH; h++)
        for (int e = 0; e < E; e++)
            for (int ch = 0; ch < c.HD; ch++) {
                const size_t dst = ((size_t)h * E + e) * c.HD + ch;
                if (e < c.T) {
                    ek[dst] = k[((size_t)h * N + e) * c.HD + ch];
                    ev[dst] = v[((size_t)h * N + e) * c.HD + ch];
                } else {
                    const int pi = e - c.T, cy = pi / PW, cx = pi % PW;
                    double ak = 0, av = 0;
                    for (int a = 0; a < DF; a++)
                        for (int b = 0; b < DF; b++) {
                            const size_t tok = (size_t)c.T + (size_t)(cy * DF + a) * c.W + cx * DF + b;
                            ak += sw[a * DF + b] * (double)cd_bf16_to_f32(k[((size_t)h * N + tok) * c.HD + ch]);
                            av += sw[a * DF + b] * (double)cd_bf16_to_f32(v[((size_t)h * N + tok) * c.HD + ch]);
                        }
                    ek[dst] = to_bf16((float)ak);
                    ev[dst] = to_bf16((float)av);
                }
            }
    int fails = 0;
    for (int var : variants) {
        std::vector<float> o(n, NAN), lse((size_t)c.NH * N, NAN);
        cd_attn_kparams p;
        memset(&p, 0, sizeof p);
        p.q = q.data();
        p.k = k.data();
        p.v = v.data();
        p.o = o.data();
        p.lse = lse.data();
        p.N = (int)N;
        p.T = c.T;
        p.H = c.H;
        p.W = c.W;
        p.scale = 1.0f / sqrtf((float)c.HD);
        p.scale_log2 = (float)((double)p.scale * 1.4426950408889634);
        p.img_row1 = c.H;
        if (c.r == 0) {
            p.q_dense_end = (int)N;
        } else {
            p.r = cd_attn_eff_radius(&d);
            p.q_dense_end = c.T;
            p.ek = ek.data();
            p.ev = ev.data();
            p.ek_hstride = (long long)E * c.HD;
            p.E = E;
            if (opt) { /* as attn_cuda.cu sets them */
                if (!opt->text_q) p.q_dense_end = 0;
                p.dense_key0 = opt->text_key0;
                p.img_row0 = opt->row0;
                p.img_row1 = std::max(opt->row0, opt->row1);
            }
        }
        const long coll0 = emu::collectives;
        switch (c.HD) {
            case 32: emu_run<32>(var, p, c.NH); break;
            case 64: emu_run<64>(var, p, c.NH); break;
            default: emu_run<128>(var, p, c.NH); break;
        }
        /* compare: every element written, per-row relative L2 of o, |lse - ref| */
        double num = 0, den = 0, worst_row = 0, worst_lse = 0;
        size_t nan = 0;
        long worst_i = -1;
        size_t stray = 0; /* rows left out but written */
        for (size_t row = 0; row < (size_t)c.NH * N; row++) {
            if (!want[row]) {
                for (int ch = 0; ch < c.HD; ch++) stray += !std::isnan(o[row * c.HD + ch]);
                stray += !std::isnan(lse[row]);
                continue;
            }
            double rn = 0, rd = 0;
            for (int ch = 0; ch < c.HD; ch++) {
                const double a = o[row * c.HD + ch], b = oref[row * c.HD + ch];
                if (std::isnan(a)) nan++;
                rn += (a - b) * (a - b);
                rd += b * b;
            }
            num += rn;
            den += rd;
            const double rr = sqrt(rn) / (sqrt(rd) + 1e-3);
            if (!(rr <= worst_row)) worst_row = rr, worst_i = (long)row;
            const double le = fabs((double)lse[row] - lref[row]);
            if (std::isnan(lse[row])) nan++;
            if (le > worst_lse) worst_lse = le;
        }
        const double rel = den > 0 ? sqrt(num / den) : sqrt(num); /* den 0: no row computed */
        const bool ok = nan == 0 && stray == 0 && rel <= 1e-2 && worst_row <= 2e-2 && worst_lse <= 1e-2;
        char os[80] = "";
        if (opt)
            snprintf(os, sizeof os, " [text_q %d key0 %d rows %d..%d]", opt->text_q, opt->text_key0, opt->row0,
                     opt->row1);
        printf("%s NH=%d HD=%d T=%d grid=%dx%d r=%d down=%d%s %-6s: rel %.2e row %.2e (row %ld) "
               "lse %.2e nan %zu stray %zu  [%ld collectives]\n",
               ok ? "ok  " : "FAIL", c.NH, c.HD, c.T, c.H, c.W, c.r, c.down, os, vname[var], rel, worst_row, worst_i,
               worst_lse, nan, stray, emu::collectives - coll0);
        fflush(stdout);
        fails += !ok;
    }
    return fails;
}

int main(int argc, char **argv) {
    const bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    cd_ctx_params cp = cd_ctx_params_default();
    cp.threads = 1;
    cd_ctx *ctx;
    if (cd_ctx_create(&cp, &ctx)) return 2;
    std::vector<Case> cases = {
        /* NH HD T H W r down */
        {1, 32, 7, 3, 5, 0, 0},       /* dense, ragged: N = 22 */
        {2, 64, 77, 5, 13, 0, 0},     /* dense, N = 142: 3 chunks, last ragged */
        {1, 32, 7, 13, 29, 3, 0},     /* CLEAR, partial tiles in both directions */
        {1, 64, 0, 16, 16, 1, 0},     /* r = 1: itself only, no text */
        {1, 32, 77, 5, 70, 5, 0},     /* wide grid, ragged row runs */
        {1, 32, 7, 9, 11, 100000, 0}, /* huge radius = dense */
        {2, 32, 5, 8, 8, 2, 2},       /* pooled */
        {1, 64, 3, 12, 16, 8, 4},     /* pooled, r = 8 */
        {1, 128, 7, 6, 20, 3, 0},     /* head_dim 128 */
        {1, 32, 0, 4, 100, 40, 0},    /* rows wider than a chunk (16 + 2*39 keys) */
        {1, 32, 5, 40, 5, 3, 0},      /* grid narrower than a tile */
        {1, 32, 3, 1, 1, 1, 0},       /* one image token */
        {1, 64, 130, 2, 3, 2, 0},     /* 130 text keys: 3 extra-key chunks, text tiles > 1 */
    };
    if (quick) cases.resize(3);
    std::vector<int> variants = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    if (getenv("EMU_VARIANTS")) { /* e.g. EMU_VARIANTS=2,3 */
        variants.clear();
        for (const char *s = getenv("EMU_VARIANTS"); *s;) {
            char *end;
            variants.push_back((int)strtol(s, &end, 10));
            s = *end ? end + 1 : end;
        }
    }
    /* patch parallelism's options (cd_cuda_attention_bf16_ex), also in --quick: image rows of a band
     * of an extended grid, text rows without the text keys (exact mode, rank > 0) or with some */
    struct OptCase {
        Case c;
        Opts o;
    };
    const std::vector<OptCase> opt_cases = {
        {{1, 32, 7, 13, 29, 3, 0}, {0, 0, 4, 9}},  /* band rows 4..8, tiles not aligned to rows */
        {{1, 32, 7, 13, 29, 3, 0}, {1, 7, 0, 0}},  /* text rows over the image keys only */
        {{2, 32, 5, 8, 8, 2, 2}, {1, 5, 3, 7}},    /* pooled: both at once */
        {{1, 64, 130, 2, 3, 2, 0}, {1, 60, 1, 2}}, /* 3 text tiles over keys [60, N), last row */
        {{1, 32, 3, 1, 1, 1, 0}, {0, 0, 1, 1}},    /* nothing at all */
    };
    int fails = 0;
    for (const OptCase &oc : opt_cases) fails += run_case(ctx, oc.c, variants, &oc.o);
    for (const Case &c : cases) fails += run_case(ctx, c, variants);
    printf("%s: %d failing runs\n", fails ? "FAILED" : "all passed", fails);
    cd_ctx_free(ctx);
    return fails ? 1 : 0;
}
