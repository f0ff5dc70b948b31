/* comm.h — the process group of patch parallelism, internal side: non-blocking point-to-point
 * exchange with bounded waits, all-gathers, and byte/wait accounting. MPI in comm_mpi.c when the
 * build finds MPI (Makefile: MPI=1), else comm_none.c (every entry says the build has no MPI).
 * Waits never block forever: past the communicator's timeout they fail naming the peers that did
 * not answer, so a dead rank ends the job with a message instead of a hang. */
#ifndef CD_COMM_H
#define CD_COMM_H

#include "../util/internal.h"

/* One message of an exchange: `bytes` from/to `buf`, with rank `peer`. */
typedef struct {
    int peer;
    void *buf;
    size_t bytes;
} cd_xfer;

/* Starts sends and receives (at most 2 * size - 2 of each kind in flight); cd_comm_wait ends them.
 * `what` names the exchange in errors ("halo"). */
cd_status cd_comm_start(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs,
                        int nr, const char *what);
cd_status cd_comm_wait(cd_ctx *ctx, cd_comm *c);
/* Every rank's `bytes` bytes, in rank order, into recv [size * bytes]. */
cd_status cd_comm_allgather(cd_ctx *ctx, cd_comm *c, const void *send, size_t bytes, void *recv,
                            const char *what);
/* Rank i's counts[i] bytes at recv + offset(i) (offsets are the running sum of counts). */
cd_status cd_comm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts,
                             void *recv, const char *what);

#endif
