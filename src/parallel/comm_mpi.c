/* comm_mpi.c — cd_comm over MPI (OpenMPI from Debian): MPI_COMM_WORLD with MPI_ERRORS_RETURN,
 * non-blocking sends/receives and all-gathers completed by polling MPI_Testall against a deadline
 * (MPI has no timed wait), so that a rank that died or never arrives ends the wait with an error
 * naming it rather than a hang. Counts are bytes (MPI_BYTE); one message is at most INT_MAX bytes. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAXREQ 512

struct cd_comm {
    MPI_Comm comm;
    int rank, size;
    double timeout;
    MPI_Request req[MAXREQ];
    int peer[MAXREQ];  /* the rank of each request (for the timeout message); -1: collective */
    char recv[MAXREQ]; /* 1: a receive (can be withdrawn on timeout) */
    int nreq;
    const char *what; /* the exchange in flight */
    cd_comm_stats st;
    int finalize; /* this object initialized MPI */
    int single;   /* cd_comm_init_single: no MPI behind it */
    void *dev;    /* cd_comm_set_device_state */
    void (*dev_release)(void *);
};

int cd_comm_available(void) { return 1; }

static cd_status mpi_err(cd_ctx *ctx, const cd_comm *c, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return cd_set_error(ctx, CD_ERR_IO, "rank %d: MPI %s failed: %s", c ? c->rank : -1, what, msg);
}

cd_status cd_comm_init(cd_ctx *ctx, int *argc, char ***argv, cd_comm **out) {
    *out = NULL;
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return cd_set_error(ctx, CD_ERR_IO, "MPI_Init failed (is this run under mpirun?)");
    cd_comm *c = calloc(1, sizeof *c);
    if (!c) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    c->finalize = !inited;
    c->comm = MPI_COMM_WORLD;
    c->timeout = 300.0;
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    *out = c;
    return CD_OK;
}

cd_status cd_comm_init_single(cd_ctx *ctx, cd_comm **out) {
    *out = NULL;
    cd_comm *c = calloc(1, sizeof *c);
    if (!c) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    c->single = 1;
    c->comm = MPI_COMM_NULL;
    c->timeout = 300.0;
    c->size = 1;
    *out = c;
    return CD_OK;
}

int cd_comm_is_single(const cd_comm *c) { return c->single; }
double cd_comm_timeout(const cd_comm *c) { return c->timeout; }
void *cd_comm_device_state(const cd_comm *c) { return c->dev; }
void cd_comm_set_device_state(cd_comm *c, void *state, void (*release)(void *state)) {
    c->dev = state;
    c->dev_release = release;
}
void cd_comm_stats_add(cd_comm *c, uint64_t sent, uint64_t received, uint64_t messages, double wait) {
    c->st.bytes_sent += sent;
    c->st.bytes_received += received;
    c->st.messages += messages;
    c->st.wait_seconds += wait;
}

int cd_comm_rank(const cd_comm *c) { return c->rank; }
int cd_comm_size(const cd_comm *c) { return c->size; }
void cd_comm_set_timeout(cd_comm *c, double seconds) { c->timeout = seconds > 0 ? seconds : 300.0; }
void cd_comm_stats_get(const cd_comm *c, cd_comm_stats *s) { *s = c->st; }
void cd_comm_stats_reset(cd_comm *c) { memset(&c->st, 0, sizeof c->st); }

void cd_comm_abort(cd_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    if (c && c->single) exit(code ? code : 1);
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, code);
}

void cd_comm_free(cd_comm *c) {
    if (!c) return;
    if (c->dev_release) c->dev_release(c->dev);
    if (c->single) {
        free(c);
        return;
    }
    if (c->nreq) { /* abandon what is in flight (an error path): cancel before finalizing */
        for (int i = 0; i < c->nreq; i++) {
            MPI_Cancel(&c->req[i]);
            MPI_Request_free(&c->req[i]);
        }
    }
    if (c->finalize) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
    free(c);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Polls the requests in flight until all complete or the deadline passes. */
static cd_status wait_all(cd_ctx *ctx, cd_comm *c) {
    const double t0 = now();
    /* 20 us between polls; past 50 ms (not a halo of a running forward: e.g. rank 0 decoding) the
     * naps grow to 1 ms, so that a waiting rank does not take CPU from ranks sharing its cores */
    struct timespec nap = {0, 20000};
    int done = 0;
    while (c->nreq) {
        const int rc = MPI_Testall(c->nreq, c->req, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            c->nreq = 0;
            return mpi_err(ctx, c, rc, c->what);
        }
        if (done) break;
        if (now() - t0 > c->timeout) {
            char who[256] = "";
            size_t n = 0;
            for (int i = 0; i < c->nreq && n + 16 < sizeof who; i++) {
                int one = 0;
                MPI_Test(&c->req[i], &one, MPI_STATUS_IGNORE);
                if (!one && c->peer[i] >= 0)
                    n += (size_t)snprintf(who + n, sizeof who - n, "%s%d", n ? ", " : "", c->peer[i]);
            }
            const int nr = c->nreq;
            for (int i = 0; i < c->nreq; i++) { /* withdraw receives, let sends go */
                if (c->peer[i] < 0 || c->req[i] == MPI_REQUEST_NULL) continue;
                if (c->recv[i]) {
                    MPI_Cancel(&c->req[i]);
                    MPI_Wait(&c->req[i], MPI_STATUS_IGNORE);
                } else {
                    MPI_Request_free(&c->req[i]);
                }
            }
            c->nreq = 0;
            return cd_set_error(ctx, CD_ERR_IO,
                                "rank %d: no answer from rank(s) %s within %.0f s in the %s exchange "
                                "(%d message(s) pending): a rank died or runs different work",
                                c->rank, n ? who : "?", c->timeout, c->what, nr);
        }
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 1000000 && now() - t0 > 0.05)
            nap.tv_nsec = nap.tv_nsec * 2 > 1000000 ? 1000000 : nap.tv_nsec * 2;
    }
    c->nreq = 0;
    c->st.wait_seconds += now() - t0;
    return CD_OK;
}

cd_status cd_comm_start(cd_ctx *ctx, cd_comm *c, const cd_xfer *sends, int ns, const cd_xfer *recvs, int nr,
                        const char *what) {
    if (c->nreq) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: an exchange is already in flight");
    if (c->single) {
        for (int i = 0; i < ns + nr; i++)
            if ((i < nr ? recvs[i] : sends[i - nr]).peer != 0)
                return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: a %s message to rank %d of 1", what,
                                    (i < nr ? recvs[i] : sends[i - nr]).peer);
        if (ns || nr) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: %s messages to itself", what);
        return CD_OK;
    }
    if (ns + nr > MAXREQ) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: too many messages");
    c->what = what;
    for (int i = 0; i < nr + ns; i++) {
        const cd_xfer *x = i < nr ? &recvs[i] : &sends[i - nr];
        if (x->bytes > INT_MAX)
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "comm: a %s message of %zu bytes exceeds MPI's int count",
                                what, x->bytes);
        const int rc = i < nr ? MPI_Irecv(x->buf, (int)x->bytes, MPI_BYTE, x->peer, 7, c->comm, &c->req[c->nreq])
                              : MPI_Isend(x->buf, (int)x->bytes, MPI_BYTE, x->peer, 7, c->comm, &c->req[c->nreq]);
        if (rc != MPI_SUCCESS) return mpi_err(ctx, c, rc, what);
        c->recv[c->nreq] = i < nr;
        c->peer[c->nreq++] = x->peer;
        if (i < nr)
            c->st.bytes_received += x->bytes;
        else
            c->st.bytes_sent += x->bytes;
        c->st.messages++;
    }
    return CD_OK;
}

cd_status cd_comm_wait(cd_ctx *ctx, cd_comm *c) { return wait_all(ctx, c); }

cd_status cd_comm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *send, const size_t *counts, void *recv,
                             const char *what) {
    if (c->single) {
        if (recv != send && counts[0]) memmove(recv, send, counts[0]);
        return CD_OK;
    }
    int *cnt = malloc(sizeof(int) * 2 * (size_t)c->size);
    if (!cnt) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    int *disp = cnt + c->size;
    size_t off = 0;
    for (int i = 0; i < c->size; i++) {
        if (counts[i] > INT_MAX || off > INT_MAX) {
            free(cnt);
            return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "comm: the %s gather exceeds MPI's int counts", what);
        }
        cnt[i] = (int)counts[i];
        disp[i] = (int)off;
        off += counts[i];
    }
    c->what = what;
    const int rc = MPI_Iallgatherv(send, cnt[c->rank], MPI_BYTE, recv, cnt, disp, MPI_BYTE, c->comm, &c->req[0]);
    free(cnt);
    if (rc != MPI_SUCCESS) return mpi_err(ctx, c, rc, what);
    c->peer[0] = -1;
    c->nreq = 1;
    c->st.bytes_sent += counts[c->rank] * (size_t)(c->size - 1);
    c->st.bytes_received += off - counts[c->rank];
    c->st.messages += (uint64_t)(c->size - 1);
    return wait_all(ctx, c);
}

cd_status cd_comm_bcast(cd_ctx *ctx, cd_comm *c, void *buf, size_t bytes, int root, const char *what) {
    if (root < 0 || root >= c->size)
        return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: %s broadcast from rank %d of %d", what, root, c->size);
    if (c->single || c->size == 1) return CD_OK;
    if (c->nreq) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: an exchange is already in flight");
    if (bytes > INT_MAX)
        return cd_set_error(ctx, CD_ERR_UNSUPPORTED, "comm: the %s broadcast exceeds MPI's int count", what);
    c->what = what;
    const int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, root, c->comm, &c->req[0]);
    if (rc != MPI_SUCCESS) return mpi_err(ctx, c, rc, what);
    c->peer[0] = -1;
    c->nreq = 1;
    if (c->rank == root)
        c->st.bytes_sent += bytes * (size_t)(c->size - 1);
    else
        c->st.bytes_received += bytes;
    c->st.messages++;
    return wait_all(ctx, c);
}

cd_status cd_comm_allgather(cd_ctx *ctx, cd_comm *c, const void *send, size_t bytes, void *recv, const char *what) {
    size_t *counts = malloc(sizeof(size_t) * (size_t)c->size);
    if (!counts) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    for (int i = 0; i < c->size; i++) counts[i] = bytes;
    cd_status s = cd_comm_allgatherv(ctx, c, send, counts, recv, what);
    free(counts);
    return s;
}

/* FNV-1a over the bytes: equal data gives equal fingerprints on every rank. */
static uint64_t fnv(const void *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h ^ n;
}

cd_status cd_comm_check_same(cd_ctx *ctx, cd_comm *c, const void *data, size_t n, const char *what) {
    if (c->single) return CD_OK;
    uint64_t mine = fnv(data, n), *all = malloc(sizeof(uint64_t) * (size_t)c->size);
    if (!all) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    cd_status s = cd_comm_allgather(ctx, c, &mine, sizeof mine, all, "configuration check");
    if (!s)
        for (int i = 0; i < c->size; i++)
            if (all[i] != all[0]) {
                s = cd_set_error(ctx, CD_ERR_INVALID_ARG,
                                 "rank %d: ranks 0 and %d differ in %s: every rank must run the same job", c->rank, i,
                                 what);
                break;
            }
    free(all);
    return s;
}
