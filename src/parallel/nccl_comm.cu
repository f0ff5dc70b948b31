/* nccl_comm.cu — devcomm.h over NCCL (builds with CUDA and NCCL: Makefile NCCL=1). Host code only;
 * a .cu file for the CUDA backend's private state (cuda_internal.h is C++). */
#include "devcomm.h"
#include "../backend/cuda/cuda_internal.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    ncclComm_t comm;
    int broken; /* aborted after a timeout or an error: every later call fails */
} nccl_state;

int cd_devcomm_built(void) { return 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static void nap(void) {
    const struct timespec t = {0, 20000}; /* 20 us between polls */
    nanosleep(&t, NULL);
}

static void release(void *p) {
    nccl_state *st = (nccl_state *)p;
    if (!st) return;
    if (st->comm) {
        if (st->broken) {
            ncclCommAbort(st->comm);
        } else {
            /* non-blocking communicator: finalize, let it settle (bounded), then destroy */
            ncclResult_t r = ncclCommFinalize(st->comm), ae = ncclInProgress;
            const double t0 = now();
            while (r == ncclSuccess || r == ncclInProgress) {
                if (ncclCommGetAsyncError(st->comm, &ae) != ncclSuccess || ae != ncclInProgress) break;
                if (now() - t0 > 10.0) break;
                nap();
            }
            if ((r == ncclSuccess || r == ncclInProgress) && ae == ncclSuccess)
                ncclCommDestroy(st->comm);
            else
                ncclCommAbort(st->comm);
        }
    }
    free(st);
}

/* Aborts the NCCL communicator (every later call fails) and sets the error. */
static cd_status broken(cd_ctx *ctx, cd_comm *c, nccl_state *st, const char *fmt_what, const char *detail) {
    if (st->comm && !st->broken) ncclCommAbort(st->comm);
    st->comm = NULL;
    st->broken = 1;
    return cd_set_error(ctx, CD_ERR_IO, "rank %d: NCCL %s: %s (the NCCL communicator was aborted)", cd_comm_rank(c),
                        fmt_what, detail);
}

/* After a call that may return ncclInProgress (non-blocking communicator): polls NCCL's
 * asynchronous error until the call has settled, bounded by the comm's timeout. */
static cd_status settle(cd_ctx *ctx, cd_comm *c, nccl_state *st, ncclResult_t r, const char *what) {
    if (r != ncclSuccess && r != ncclInProgress) return broken(ctx, c, st, what, ncclGetErrorString(r));
    const double t0 = now();
    for (;;) {
        ncclResult_t ae = ncclSuccess;
        const ncclResult_t q = ncclCommGetAsyncError(st->comm, &ae);
        if (q != ncclSuccess) return broken(ctx, c, st, what, ncclGetErrorString(q));
        if (ae == ncclSuccess) return CD_OK;
        if (ae != ncclInProgress) return broken(ctx, c, st, what, ncclGetErrorString(ae));
        if (now() - t0 > cd_comm_timeout(c)) {
            char msg[160];
            snprintf(msg, sizeof msg, "not done within %.0f s: a rank died or runs different work", cd_comm_timeout(c));
            return broken(ctx, c, st, what, msg);
        }
        nap();
    }
}

static cd_status state_of(cd_ctx *ctx, cd_comm *c, nccl_state **out, const char *what) {
    nccl_state *st = (nccl_state *)cd_comm_device_state(c);
    *out = st;
    if (!ctx || !ctx->dev_state)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "NCCL %s: the CUDA backend is not initialised", what);
    if (!st) return cd_set_error(ctx, CD_ERR_INTERNAL, "NCCL %s: no NCCL communicator (cd_devcomm_setup)", what);
    if (st->broken)
        return cd_set_error(ctx, CD_ERR_IO,
                            "rank %d: NCCL %s: the NCCL communicator was aborted by an "
                            "earlier failure",
                            cd_comm_rank(c), what);
    return CD_OK;
}

cd_status cd_devcomm_setup(cd_ctx *ctx, cd_comm *c) {
    if (cd_comm_device_state(c)) {
        nccl_state *st;
        return state_of(ctx, c, &st, "set-up");
    }
    if (!ctx || !ctx->dev_state)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "NCCL: the CUDA backend is not initialised");
    const int P = cd_comm_size(c), me = cd_comm_rank(c);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (me == 0) {
        const ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess)
            return cd_set_error(ctx, CD_ERR_IO, "rank 0: ncclGetUniqueId failed: %s", ncclGetErrorString(r));
    }
    cd_status s = CD_OK;
    if (P > 1 && (s = cd_comm_bcast(ctx, c, &id, sizeof id, 0, "NCCL id"))) return s;
    nccl_state *st = (nccl_state *)calloc(1, sizeof *st);
    if (!st) return cd_set_error(ctx, CD_ERR_OOM, "NCCL: out of memory");
    const cudaError_t ce = cudaSetDevice(cd_cuda_of(ctx)->device);
    if (ce != cudaSuccess) {
        free(st);
        return cd_cuda_err(ctx, ce, "cudaSetDevice for NCCL");
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; /* every call returns; settle() bounds the waits */
    const ncclResult_t r = ncclCommInitRankConfig(&st->comm, P, id, me, &cfg);
    char what[96];
    snprintf(what, sizeof what, "communicator set-up (rank %d of %d; one GPU per rank)", me, P);
    if (r != ncclSuccess && r != ncclInProgress) {
        free(st);
        return cd_set_error(ctx, CD_ERR_IO, "rank %d: NCCL %s failed: %s", me, what, ncclGetErrorString(r));
    }
    cd_comm_set_device_state(c, st, release);
    return settle(ctx, c, st, r, what);
}

cd_status cd_devcomm_exchange(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs, int nr,
                              const char *what) {
    nccl_state *st;
    cd_status s = state_of(ctx, c, &st, what);
    if (s) return s;
    if (ns + nr == 0) return CD_OK;
    cudaStream_t stream = cd_cuda_of(ctx)->stream;
    uint64_t sent = 0, got = 0;
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < nr && r == ncclSuccess; i++) {
        r = ncclRecv(recvs[i].buf, recvs[i].bytes, ncclUint8, recvs[i].peer, st->comm, stream);
        got += recvs[i].bytes;
    }
    for (int i = 0; i < ns && r == ncclSuccess; i++) {
        r = ncclSend(sends[i].buf, sends[i].bytes, ncclUint8, sends[i].peer, st->comm, stream);
        sent += sends[i].bytes;
    }
    const ncclResult_t e = ncclGroupEnd();
    if (r == ncclSuccess || r == ncclInProgress) r = e;
    if ((s = settle(ctx, c, st, r, what))) return s;
    cd_comm_stats_add(c, sent, got, (uint64_t)(ns + nr), 0.0);
    return CD_OK;
}

cd_status cd_devcomm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts, void *recv,
                                const char *what) {
    nccl_state *st;
    cd_status s = state_of(ctx, c, &st, what);
    if (s) return s;
    const int P = cd_comm_size(c), me = cd_comm_rank(c);
    cudaStream_t stream = cd_cuda_of(ctx)->stream;
    int equal = 1;
    size_t total = 0;
    for (int i = 0; i < P; i++) {
        equal &= counts[i] == counts[0];
        total += counts[i];
    }
    ncclResult_t r;
    if (equal) {
        if (!counts[0]) return CD_OK;
        r = ncclAllGather(send, recv, counts[0], ncclUint8, st->comm, stream);
    } else { /* gather-v: one broadcast per root, in a group */
        r = ncclGroupStart();
        size_t off = 0;
        for (int j = 0; j < P && r == ncclSuccess; j++) {
            if (counts[j])
                r = ncclBroadcast(j == me ? send : (const char *)recv + off, (char *)recv + off, counts[j], ncclUint8,
                                  j, st->comm, stream);
            off += counts[j];
        }
        const ncclResult_t e = ncclGroupEnd();
        if (r == ncclSuccess || r == ncclInProgress) r = e;
    }
    if ((s = settle(ctx, c, st, r, what))) return s;
    cd_comm_stats_add(c, (uint64_t)counts[me] * (uint64_t)(P - 1), (uint64_t)(total - counts[me]), (uint64_t)(P - 1),
                      0.0);
    return CD_OK;
}

cd_status cd_devcomm_wait(cd_ctx *ctx, cd_comm *c, const char *what) {
    nccl_state *st;
    cd_status s = state_of(ctx, c, &st, what);
    if (s) return s;
    struct cd_cuda *cu = cd_cuda_of(ctx);
    const double t0 = now();
    for (;;) {
        const cudaError_t e = cudaStreamQuery(cu->stream);
        if (e == cudaSuccess) break;
        if (e != cudaErrorNotReady) {
            if (cu->sticky == cudaSuccess) cu->sticky = e;
            return cd_cuda_err(ctx, e, what);
        }
        ncclResult_t ae = ncclSuccess;
        const ncclResult_t q = ncclCommGetAsyncError(st->comm, &ae);
        if (q != ncclSuccess) return broken(ctx, c, st, what, ncclGetErrorString(q));
        if (ae != ncclSuccess && ae != ncclInProgress) return broken(ctx, c, st, what, ncclGetErrorString(ae));
        if (now() - t0 > cd_comm_timeout(c)) {
            char msg[160];
            snprintf(msg, sizeof msg, "no answer within %.0f s (%d ranks): a rank died or runs different work",
                     cd_comm_timeout(c), cd_comm_size(c));
            return broken(ctx, c, st, what, msg);
        }
        nap();
    }
    cd_comm_stats_add(c, 0, 0, 0, now() - t0);
    return CD_OK;
}
