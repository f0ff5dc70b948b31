/* comm_none.c — cd_comm in a build without MPI: cd_comm_init says so; the single-process
 * communicator (cd_comm_init_single) works as in MPI builds (rank 0 of 1, local copies). */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>

#define NO_MPI(ctx)                                                                                  \
    cd_set_error(ctx, CD_ERR_UNSUPPORTED,                                                            \
                 "this build of cleardit has no MPI support (OpenMPI's mpi.h was not found when it " \
                 "was built, or MPI=0; install libopenmpi-dev and rebuild)")

struct cd_comm { /* only ever the single-process communicator */
    double timeout;
    cd_comm_stats st;
    void *dev;
    void (*dev_release)(void *);
};

int cd_comm_available(void) { return 0; }
cd_status cd_comm_init(cd_ctx *ctx, int *argc, char ***argv, cd_comm **out) {
    (void)argc;
    (void)argv;
    *out = NULL;
    return NO_MPI(ctx);
}
cd_status cd_comm_init_single(cd_ctx *ctx, cd_comm **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return cd_set_error(ctx, CD_ERR_OOM, "comm: out of memory");
    (*out)->timeout = 300.0;
    return CD_OK;
}
int cd_comm_is_single(const cd_comm *c) {
    (void)c;
    return 1;
}
int cd_comm_rank(const cd_comm *c) {
    (void)c;
    return 0;
}
int cd_comm_size(const cd_comm *c) {
    (void)c;
    return 1;
}
void cd_comm_set_timeout(cd_comm *c, double seconds) {
    if (c) c->timeout = seconds > 0 ? seconds : 300.0;
}
double cd_comm_timeout(const cd_comm *c) { return c ? c->timeout : 300.0; }
cd_status cd_comm_check_same(cd_ctx *ctx, cd_comm *c, const void *d, size_t n, const char *what) {
    (void)d;
    (void)n;
    (void)what;
    return c ? CD_OK : NO_MPI(ctx);
}
void cd_comm_abort(cd_comm *c, int code) {
    (void)c;
    fflush(stdout);
    fflush(stderr);
    exit(code ? code : 1);
}
void cd_comm_free(cd_comm *c) {
    if (!c) return;
    if (c->dev_release) c->dev_release(c->dev);
    free(c);
}
void cd_comm_stats_get(const cd_comm *c, cd_comm_stats *s) {
    if (c)
        *s = c->st;
    else
        memset(s, 0, sizeof *s);
}
void cd_comm_stats_reset(cd_comm *c) {
    if (c) memset(&c->st, 0, sizeof c->st);
}
void cd_comm_stats_add(cd_comm *c, uint64_t sent, uint64_t received, uint64_t messages, double wait) {
    c->st.bytes_sent += sent;
    c->st.bytes_received += received;
    c->st.messages += messages;
    c->st.wait_seconds += wait;
}
void *cd_comm_device_state(const cd_comm *c) { return c->dev; }
void cd_comm_set_device_state(cd_comm *c, void *state, void (*release)(void *state)) {
    c->dev = state;
    c->dev_release = release;
}
/* one process: no peers, so an exchange has no messages */
cd_status cd_comm_start(cd_ctx *ctx, cd_comm *c, const cd_xfer *s, int ns, const cd_xfer *r, int nr, const char *what) {
    (void)s;
    (void)r;
    if (!c) return NO_MPI(ctx);
    if (ns || nr) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: %s messages on a single process", what);
    return CD_OK;
}
cd_status cd_comm_wait(cd_ctx *ctx, cd_comm *c) { return c ? CD_OK : NO_MPI(ctx); }
cd_status cd_comm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *s, const size_t *n, void *r, const char *w) {
    (void)w;
    if (!c) return NO_MPI(ctx);
    if (r != s && n[0]) memmove(r, s, n[0]);
    return CD_OK;
}
cd_status cd_comm_allgather(cd_ctx *ctx, cd_comm *c, const void *s, size_t b, void *r, const char *w) {
    return cd_comm_allgatherv(ctx, c, s, &b, r, w);
}
cd_status cd_comm_bcast(cd_ctx *ctx, cd_comm *c, void *buf, size_t bytes, int root, const char *what) {
    (void)buf;
    (void)bytes;
    if (!c) return NO_MPI(ctx);
    if (root != 0) return cd_set_error(ctx, CD_ERR_INTERNAL, "comm: %s broadcast from rank %d of 1", what, root);
    return CD_OK;
}
