/* comm.h — the process group of patch parallelism, internal side: non-blocking point-to-point
 * exchange with bounded waits, all-gathers, and byte/wait accounting. MPI in comm_mpi.c when the
 * build finds MPI (Makefile: MPI=1), else comm_none.c (every entry says the build has no MPI).
 * Both also implement the single-process communicator (cd_comm_init_single): rank 0 of 1, whose
 * collectives are local copies, with no MPI call at all.
 * Waits never block forever: past the communicator's timeout they fail naming the peers that did
 * not answer, so a dead rank ends the job with a message instead of a hang. */
#ifndef CD_COMM_H
#define CD_COMM_H

#include "../util/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One message of an exchange: `bytes` from/to `buf`, with rank `peer`. */
typedef struct {
    int peer;
    void *buf;
    size_t bytes;
} cd_xfer;

/* Starts sends and receives (at most 2 * size - 2 of each kind in flight); cd_comm_wait ends them.
 * `what` names the exchange in errors ("halo"). */
cd_status cd_comm_start(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs, int nr,
                        const char *what);
cd_status cd_comm_wait(cd_ctx *ctx, cd_comm *c);
/* Every rank's `bytes` bytes, in rank order, into recv [size * bytes]. */
cd_status cd_comm_allgather(cd_ctx *ctx, cd_comm *c, const void *send, size_t bytes, void *recv, const char *what);
/* Rank i's counts[i] bytes at recv + offset(i) (offsets are the running sum of counts). */
cd_status cd_comm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts, void *recv,
                             const char *what);

/* Broadcasts `bytes` at buf from rank `root` to every rank (a bounded wait, like the others). */
cd_status cd_comm_bcast(cd_ctx *ctx, cd_comm *c, void *buf, size_t bytes, int root, const char *what);

/* 1 for the communicator of cd_comm_init_single (no MPI behind it). */
int cd_comm_is_single(const cd_comm *c);
/* The communicator's wait limit in seconds (cd_comm_set_timeout). */
double cd_comm_timeout(const cd_comm *c);
/* Adds traffic that went around this file (the NCCL exchanges of nccl_comm.cu) to the stats. */
void cd_comm_stats_add(cd_comm *c, uint64_t sent, uint64_t received, uint64_t messages, double wait);

/* Device-side state that lives as long as the communicator (the NCCL communicator of GPU ranks,
 * nccl_comm.cu): set once; cd_comm_free calls release(state) before it ends MPI. */
void *cd_comm_device_state(const cd_comm *c);
void cd_comm_set_device_state(cd_comm *c, void *state, void (*release)(void *state));

#ifdef __cplusplus
}
#endif

#endif
