/* devcomm.h — exchanges of device (CUDA) buffers between GPU ranks of a cd_comm, over NCCL
 * (nccl_comm.cu in builds with CUDA and NCCL; nccl_none.c otherwise, where every entry fails with
 * CD_ERR_UNSUPPORTED saying why). One GPU per rank; the NCCL communicator lives in the cd_comm
 * (cd_comm_device_state) and is freed with it.
 *
 * Everything is queued on ctx's CUDA stream (cuda_internal.h) in stream order with the kernels
 * around it; cd_devcomm_wait is the only wait, and it is bounded: it polls the stream and NCCL's
 * asynchronous error against the communicator's timeout and, past it, aborts the NCCL
 * communicator (ncclCommAbort) and fails naming the exchange, so a dead rank ends the job with a
 * message instead of a hang. The NCCL communicator is non-blocking (its set-up is bounded too). */
#ifndef CD_DEVCOMM_H
#define CD_DEVCOMM_H

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

int cd_devcomm_built(void); /* 1 when this build has NCCL */
/* Creates the NCCL communicator of c on ctx's CUDA device once (later calls return at once).
 * Collective: every rank calls it. P > 1: rank 0's ncclUniqueId is broadcast over MPI; the single
 * communicator makes its own id (no MPI). */
cd_status cd_devcomm_setup(cd_ctx *ctx, cd_comm *c);
/* Queues grouped sends and receives of device buffers (cd_xfer.bytes bytes each, with peers). */
cd_status cd_devcomm_exchange(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs, int nr,
                              const char *what);
/* Queues the gather of rank i's counts[i] bytes to recv + offset(i) on every rank (offsets: the
 * running sum of counts). send may be recv + offset(rank) (in place). */
cd_status cd_devcomm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts, void *recv,
                                const char *what);
/* Waits for the queued work (kernels and exchanges), bounded as above; `what` names it. */
cd_status cd_devcomm_wait(cd_ctx *ctx, cd_comm *c, const char *what);

#ifdef __cplusplus
}
#endif

#endif
