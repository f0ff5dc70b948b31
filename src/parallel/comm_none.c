/* comm_none.c — cd_comm in a build without MPI: every entry says so. */
#include "comm.h"

#define NO_MPI(ctx) \
    cd_set_error(ctx, CD_ERR_UNSUPPORTED, \
                 "this build of cleardit has no MPI support (OpenMPI's mpi.h was not found when it " \
                 "was built, or MPI=0; install libopenmpi-dev and rebuild)")

int cd_comm_available(void) { return 0; }
cd_status cd_comm_init(cd_ctx *ctx, int *argc, char ***argv, cd_comm **out) {
    (void)argc; (void)argv;
    *out = NULL;
    return NO_MPI(ctx);
}
int cd_comm_rank(const cd_comm *c) { (void)c; return 0; }
int cd_comm_size(const cd_comm *c) { (void)c; return 1; }
void cd_comm_set_timeout(cd_comm *c, double seconds) { (void)c; (void)seconds; }
cd_status cd_comm_check_same(cd_ctx *ctx, cd_comm *c, const void *d, size_t n, const char *what) {
    (void)c; (void)d; (void)n; (void)what;
    return NO_MPI(ctx);
}
void cd_comm_abort(cd_comm *c, int code) { (void)c; (void)code; }
void cd_comm_free(cd_comm *c) { (void)c; }
void cd_comm_stats_get(const cd_comm *c, cd_comm_stats *s) { (void)c; memset(s, 0, sizeof *s); }
void cd_comm_stats_reset(cd_comm *c) { (void)c; }
cd_status cd_comm_start(cd_ctx *ctx, cd_comm *c, const cd_xfer *s, int ns, const cd_xfer *r, int nr,
                        const char *what) {
    (void)c; (void)s; (void)ns; (void)r; (void)nr; (void)what;
    return NO_MPI(ctx);
}
cd_status cd_comm_wait(cd_ctx *ctx, cd_comm *c) { (void)c; return NO_MPI(ctx); }
cd_status cd_comm_allgather(cd_ctx *ctx, cd_comm *c, const void *s, size_t b, void *r, const char *w) {
    (void)c; (void)s; (void)b; (void)r; (void)w;
    return NO_MPI(ctx);
}
cd_status cd_comm_allgatherv(cd_ctx *ctx, cd_comm *c, const void *s, const size_t *n, void *r,
                             const char *w) {
    (void)c; (void)s; (void)n; (void)r; (void)w;
    return NO_MPI(ctx);
}
