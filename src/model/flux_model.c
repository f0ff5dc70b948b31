/* flux_model.c — the public FLUX model object (cleardit.h): weights (bound from a checkpoint, or
 * random for benchmarks), the activation arena, and cd_flux_run on the ops table of the model's
 * device (from the backend registry; patch parallelism decorates that table). Nothing here asks
 * which device it is: only what the table supports, needs (workspace) and where its memory is. */
#include "flux_load.h"
#include "../ops/attn.h"
#include "../parallel/patch.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct cd_flux_model {
    cd_flux_weights w;
    cd_flux_store store; /* binding arena (checkpoint models) */
    cd_flux_store clear_store;
    cd_ckpt *ck, *clear_ck; /* weights point into these mapped files */
    const char *rope_source;
    void *random_block; /* all tensors of a random model */
    size_t weight_bytes;
    cd_flux_arena arena;
    cd_device device;   /* where cd_flux_run computes */
    const cd_ops *ops;  /* that device's table (NULL: the CPU's, before any set_device) */
    cd_flux_weights dw; /* the weights in the table's memory when it is not the host's */
    cd_flux_dev_store dev;
    cd_patch *patch; /* patch parallelism (cd_flux_set_parallel), or NULL */
    float *pout;     /* [own tokens, out_channels] of a patch-parallel run (grow-only) */
    size_t pout_cap;
};

static const cd_ops *model_ops(const cd_flux_model *m) { return m->ops ? m->ops : cd_ops_cpu(); }
static const cd_flux_weights *model_weights(const cd_flux_model *m) {
    return model_ops(m)->host_memory ? &m->w : &m->dw;
}

/* Uniform values with the given standard deviation, as f32 or bf16, from a counter-based
 * generator (any thread count gives the same weights). */
static void fill_random(void *dst, int bf16, size_t n, double stddev, double mean, uint64_t seed, int threads) {
    const float a = (float)(stddev * sqrt(3.0));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float u =
            (float)((double)(cd_mix64(seed ^ cd_mix64(i)) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
        const float v = (float)mean + a * u;
        if (bf16)
            ((uint16_t *)dst)[i] = cd_f32_to_bf16(v);
        else
            ((float *)dst)[i] = v;
    }
}

cd_status cd_flux_random(cd_ctx *ctx, const cd_flux_config *cfg, cd_dtype wdtype, const int rope_axes[3],
                         double rope_theta, uint64_t seed, cd_flux_model **out) {
    *out = NULL;
    if (wdtype != CD_DTYPE_F32 && wdtype != CD_DTYPE_BF16)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: random weights must be F32 or BF16");
    if (cfg->hidden < 1 || cfg->head_dim < 1 || cfg->hidden != cfg->heads * cfg->head_dim || cfg->depth < 0 ||
        cfg->depth_single < 0 || cfg->mlp_hidden < 1 || rope_axes[0] + rope_axes[1] + rope_axes[2] != cfg->head_dim ||
        (rope_axes[0] | rope_axes[1] | rope_axes[2]) & 1)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: inconsistent config (hidden %d = heads %d x head_dim %d, even rope "
                            "axes summing to head_dim)",
                            cfg->hidden, cfg->heads, cfg->head_dim);
    cd_flux_model *m = calloc(1, sizeof *m);
    if (!m) return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
    m->w.cfg = *cfg;
    memcpy(m->w.rope_axes, rope_axes, sizeof m->w.rope_axes);
    m->w.rope_theta = rope_theta;
    m->rope_source = "caller";
    const size_t es = wdtype == CD_DTYPE_BF16 ? 2 : 4;
    const size_t nlin = cd_flux_list_linears(&m->w, NULL);
    /* one block: block arrays, lin list, weights, then f32 biases and norm scales */
    size_t wbytes = 0, fl = 0;
    {
        cd_flux_weights probe = m->w;
        cd_flux_double *dd = calloc((size_t)cfg->depth + 1, sizeof *dd);
        cd_flux_single *ss = calloc((size_t)cfg->depth_single + 1, sizeof *ss);
        cd_lin_ref *tmp = calloc(nlin, sizeof *tmp);
        if (!dd || !ss || !tmp) {
            free(dd);
            free(ss);
            free(tmp);
            free(m);
            return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
        }
        probe.dbl = dd;
        probe.sgl = ss;
        cd_flux_list_linears(&probe, tmp);
        for (size_t i = 0; i < nlin; i++) {
            wbytes += ((size_t)tmp[i].out * tmp[i].in * es + 63) & ~(size_t)63;
            fl += ((size_t)tmp[i].out + 15) & ~(size_t)15;
        }
        free(dd);
        free(ss);
        free(tmp);
    }
    const size_t nnorm = 4 * (size_t)cfg->depth + 2 * (size_t)cfg->depth_single;
    fl += nnorm * (((size_t)cfg->head_dim + 15) & ~(size_t)15);
    const size_t arrays = (sizeof(cd_flux_double) * (size_t)cfg->depth +
                           sizeof(cd_flux_single) * (size_t)cfg->depth_single + sizeof(cd_lin_ref) * nlin + 63) &
                          ~(size_t)63;
    const size_t total = arrays + wbytes + fl * sizeof(float);
    char *blk = aligned_alloc(64, (total + 63) & ~(size_t)63);
    if (!blk) {
        free(m);
        return cd_set_error(ctx, CD_ERR_OOM, "flux: cannot allocate %zu MB of random weights", total >> 20);
    }
    m->random_block = blk;
    m->weight_bytes = total;
    m->w.dbl = (cd_flux_double *)blk;
    m->w.sgl = (cd_flux_single *)(blk + sizeof(cd_flux_double) * (size_t)cfg->depth);
    memset(blk, 0, arrays);
    cd_lin_ref *refs = (cd_lin_ref *)(blk + sizeof(cd_flux_double) * (size_t)cfg->depth +
                                      sizeof(cd_flux_single) * (size_t)cfg->depth_single);
    cd_flux_list_linears(&m->w, refs);
    char *wp = blk + arrays;
    float *fp = (float *)(blk + arrays + wbytes);
    for (size_t i = 0; i < nlin; i++) {
        const size_t cnt = (size_t)refs[i].out * refs[i].in;
        cd_lin *l = refs[i].l;
        l->w = (cd_weight){wp, wdtype, refs[i].out, refs[i].in};
        fill_random(wp, es == 2, cnt, 1.0 / sqrt((double)refs[i].in), 0.0, seed + 2 * i, cd_ctx_threads(ctx));
        wp += (cnt * es + 63) & ~(size_t)63;
        fill_random(fp, 0, (size_t)refs[i].out, 0.02, 0.0, seed + 2 * i + 1, 1);
        l->b = fp;
        fp += ((size_t)refs[i].out + 15) & ~(size_t)15;
    }
    const size_t hdp = ((size_t)cfg->head_dim + 15) & ~(size_t)15;
    uint64_t ns = seed ^ 0x5eedull;
    for (int i = 0; i < cfg->depth; i++) {
        const float **ptrs[4] = {&m->w.dbl[i].img.norm_q, &m->w.dbl[i].img.norm_k, &m->w.dbl[i].txt.norm_q,
                                 &m->w.dbl[i].txt.norm_k};
        for (int j = 0; j < 4; j++, fp += hdp) {
            fill_random(fp, 0, (size_t)cfg->head_dim, 0.1, 1.0, ns++, 1);
            *ptrs[j] = fp;
        }
    }
    for (int i = 0; i < cfg->depth_single; i++) {
        fill_random(fp, 0, (size_t)cfg->head_dim, 0.1, 1.0, ns++, 1);
        m->w.sgl[i].norm_q = fp;
        fp += hdp;
        fill_random(fp, 0, (size_t)cfg->head_dim, 0.1, 1.0, ns++, 1);
        m->w.sgl[i].norm_k = fp;
        fp += hdp;
    }
    *out = m;
    return CD_OK;
}

void cd_flux_free(cd_flux_model *m) {
    if (!m) return;
    cd_flux_arena_free(&m->arena);
    cd_flux_dev_store_free(&m->dev);
    cd_patch_free(m->patch);
    free(m->pout);
    cd_flux_store_free(&m->store);
    cd_flux_store_free(&m->clear_store);
    cd_ckpt_close(m->ck);
    cd_ckpt_close(m->clear_ck);
    free(m->random_block);
    free(m);
}

/* Reserves the scratch every linear of the model needs for n rows (the widest input decides;
 * the table says how much for each weight dtype), so that a forward never allocates. */
static cd_status reserve_linears(cd_ctx *ctx, const cd_ops *ops, cd_flux_model *m, size_t n) {
    cd_flux_weights w = *model_weights(m);
    const size_t nlin = cd_flux_list_linears(&w, NULL);
    cd_lin_ref *refs = malloc(nlin * sizeof *refs);
    if (!refs) return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
    cd_flux_list_linears(&w, refs);
    size_t need = 0;
    for (size_t i = 0; i < nlin; i++) {
        const cd_op_desc d = {
            .op = CD_OP_LINEAR, .n = n, .in = refs[i].l->w.in, .out = refs[i].l->w.out, .wdtype = refs[i].l->w.dtype};
        const size_t b = ops->workspace(ops, ctx, &d);
        if (b > need) need = b;
    }
    free(refs);
    return ops->reserve(ctx, need);
}

cd_status cd_flux_reserve(cd_ctx *ctx, cd_flux_model *m, size_t max_tokens) {
    const cd_ops *ops = model_ops(m);
    if (m->arena.block && m->arena.ops == ops && m->arena.max_tokens >= max_tokens) return CD_OK;
    cd_flux_arena_free(&m->arena);
    cd_status s = cd_flux_arena_init_ops(ctx, ops, &m->w.cfg, max_tokens, &m->arena);
    if (s) return s;
    return reserve_linears(ctx, ops, m, max_tokens);
}

cd_status cd_flux_set_device(cd_ctx *ctx, cd_flux_model *m, cd_device dev) {
    if (dev == m->device && m->ops) return CD_OK;
    const cd_ops *ops = NULL;
    cd_status s = cd_backend_ops(ctx, dev, &ops);
    if (s) return s;
    cd_flux_arena_free(&m->arena);
    cd_flux_dev_store_free(&m->dev);
    m->device = CD_DEVICE_CPU;
    m->ops = NULL;
    /* the model's attention shape on this backend (the head_dim decides; the grid comes later) */
    const cd_attn_desc ad = {m->w.cfg.heads, m->w.cfg.head_dim, 0, 1, 1, 0, 0, 0};
    const cd_op_desc od = {.op = CD_OP_ATTENTION, .attn = &ad};
    if ((s = ops->supports(ops, ctx, &od))) {
        char why[sizeof ctx->err];
        snprintf(why, sizeof why, "%s", ctx->err);
        return cd_set_error(ctx, s, "flux: %s", why);
    }
    if (!ops->host_memory && (s = cd_flux_weights_to_backend(ctx, ops, &m->w, &m->dw, &m->dev))) return s;
    m->device = dev;
    m->ops = ops;
    return CD_OK;
}

cd_device cd_flux_model_device(const cd_flux_model *m) { return m->device; }

size_t cd_flux_weight_bytes(const cd_flux_model *m) { return m->weight_bytes; }
size_t cd_flux_arena_bytes(const cd_flux_model *m) { return m->arena.bytes; }

typedef struct {
    double *sec;
    double t;
} block_timer;

static void on_block(void *user, int block, const float *x, size_t n, size_t d) {
    (void)x;
    (void)n;
    (void)d;
    block_timer *bt = user;
    const double now = cd_now();
    bt->sec[block] = now - bt->t; /* the first block's time includes the embedders */
    bt->t = now;
}

cd_status cd_flux_set_parallel(cd_ctx *ctx, cd_flux_model *m, cd_comm *comm, cd_text_attention mode) {
    cd_patch_free(m->patch);
    m->patch = NULL;
    if (!comm) return CD_OK;
    if (mode != CD_TEXT_EXACT && mode != CD_TEXT_APPROX)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: unknown text attention mode %d", (int)mode);
    cd_status s = cd_patch_create(ctx, comm, mode, &m->patch);
    const cd_ops *ops;
    /* the decorator's checks (and a device communicator's collective setup) now, so that a build
     * that cannot run it says so before the first step; run_patch decorates again after a later
     * set_device */
    if (!s) s = cd_patch_decorate(ctx, m->patch, model_ops(m), &ops);
    return s;
}

/* A patch-parallel forward: this rank's band of image rows through the model with the halo
 * attention, then every band's output gathered into `out` on every rank. */
static cd_status run_patch(cd_ctx *ctx, cd_flux_model *m, const cd_flux_run_params *p, float *out) {
    const cd_flux_config *c = &m->w.cfg;
    if ((int64_t)p->grid_h * p->grid_w != p->L)
        return cd_set_error(ctx, CD_ERR_SHAPE, "flux: grid %dx%d does not hold %d image tokens", p->grid_h, p->grid_w,
                            p->L);
    if (p->down >= 2 && !m->w.spatial_weight)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: down-sampled CLEAR (down %d) needs CLEAR weights with spatial_weight", p->down);
    /* every rank must run the same forward: shapes, attention, step */
    const struct {
        cd_flux_config cfg;
        int32_t L, T, gh, gw, radius, down;
        float scale, timestep, guidance;
        double ntk;
    } same = {*c,      p->L,          p->T,        p->grid_h,   p->grid_w,  p->radius,
              p->down, p->attn_scale, p->timestep, p->guidance, p->rope_ntk};
    cd_comm *comm = cd_patch_comm(m->patch);
    cd_status s = cd_comm_check_same(ctx, comm, &same, sizeof same, "the forward's shape, attention or step");
    if (s) return s;
    int y0, y1;
    if ((s = cd_patch_split(ctx, m->patch, p->grid_h, p->grid_w, p->radius, p->down >= 2 ? p->down : 0, &y0, &y1)))
        return s;
    const size_t W = (size_t)p->grid_w, Lloc = (size_t)(y1 - y0) * W, oc = (size_t)c->out_channels;
    const cd_ops *ops = NULL;
    if ((s = cd_patch_decorate(ctx, m->patch, model_ops(m), &ops))) return s;
    if ((s = cd_flux_reserve(ctx, m, Lloc + (size_t)p->T))) return s;
    /* the halo attention's scratch (grow-only; the forward then allocates none) */
    const cd_attn_desc ad = {c->heads, c->head_dim, p->T, y1 - y0, p->grid_w, p->radius, p->down, p->attn_scale};
    const cd_op_desc od = {.op = CD_OP_ATTENTION, .attn = &ad};
    if ((s = ops->reserve(ctx, ops->workspace(ops, ctx, &od)))) return s;
    if (Lloc * oc > m->pout_cap) {
        free(m->pout);
        m->pout_cap = 0;
        if (!(m->pout = malloc(Lloc * oc * sizeof(float) + 16)))
            return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
        m->pout_cap = Lloc * oc;
    }
    cd_flux_run_params in = *p; /* this rank's band of image rows */
    in.img = p->img + (size_t)y0 * W * (size_t)c->in_channels;
    in.img_ids = p->img_ids + (size_t)y0 * W * 3;
    in.L = (int32_t)Lloc;
    in.grid_h = y1 - y0;
    block_timer bt = {p->block_seconds, cd_now()};
    cd_flux_probe probe = {on_block, &bt};
    s = cd_flux_forward(ctx, ops, model_weights(m), &in, &m->arena, m->pout, p->block_seconds ? &probe : NULL, NULL);
    if (s) return s;
    const int P = cd_comm_size(comm);
    const int *band = cd_patch_bands(m->patch);
    size_t *cnt = m->patch->counts; /* the attention layers are done with it */
    for (int i = 0; i < P; i++) cnt[i] = (size_t)(band[i + 1] - band[i]) * W * oc * sizeof(float);
    return cd_comm_allgatherv(ctx, comm, m->pout, cnt, out, "output bands");
}

cd_status cd_flux_run(cd_ctx *ctx, cd_flux_model *m, const cd_flux_run_params *p, float *out) {
    if (p->L < 1 || p->T < 0)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG, "flux: need L >= 1 image and T >= 0 text tokens");
    if (!(p->attn_scale >= 0) || !(p->rope_ntk >= 0) || !isfinite(p->attn_scale) || !isfinite(p->rope_ntk))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: attention scale and RoPE NTK factor must be finite and >= 0");
    if (m->patch) return run_patch(ctx, m, p, out);
    if (p->down >= 2 && !m->w.spatial_weight)
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "flux: down-sampled CLEAR (down %d) needs CLEAR weights with spatial_weight", p->down);
    cd_status s = cd_flux_reserve(ctx, m, (size_t)p->L + (size_t)p->T);
    if (s) return s;
    /* the attention kernel's scratch for this call's mask shares ctx's work area with the
     * linear's weight tiles; reserving it here keeps cd_flux_forward allocation-free */
    const cd_flux_config *c = &m->w.cfg;
    cd_attn_desc ad = {c->heads, c->head_dim, p->T, p->grid_h, p->grid_w, p->radius, p->down, p->attn_scale};
    if (p->radius > 0 && cd_attn_validate(ctx, &ad) != CD_OK) return CD_ERR_INVALID_ARG;
    if (p->radius == 0) { /* dense: the forward views the image as one row */
        ad.grid_h = 1;
        ad.grid_w = p->L;
    }
    const cd_ops *ops = model_ops(m);
    const cd_op_desc od = {.op = CD_OP_ATTENTION, .attn = &ad};
    if ((s = ops->reserve(ctx, ops->workspace(ops, ctx, &od)))) return s;
    block_timer bt = {p->block_seconds, cd_now()};
    cd_flux_probe probe = {on_block, &bt};
    bt.t = cd_now();
    return cd_flux_forward(ctx, ops, model_weights(m), p, &m->arena, out, p->block_seconds ? &probe : NULL, NULL);
}

/* ---- loading from a checkpoint --------------------------------------------------------------- */

/* axes_dims_rope (and theta) from a diffusers config.json in the checkpoint's directory (or in
 * the directory itself). 1 if found, 0 if there is no such file or key, -1 on a malformed file. */
static int config_json_rope(cd_ctx *ctx, const char *path, int ax[3], double *theta) {
    char dir[4096], cfgp[4200];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    } else {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            strcpy(dir, ".");
        snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    }
    json_error_t je;
    FILE *f = fopen(cfgp, "rb");
    if (!f) return 0;
    json_t *j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    if (!j) {
        cd_set_error(ctx, CD_ERR_FORMAT, "%s: invalid JSON (%s, line %d)", cfgp, je.text, je.line);
        return -1;
    }
    int found = 0;
    json_t *a = json_object_get(j, "axes_dims_rope");
    if (a) {
        if (!json_is_array(a) || json_array_size(a) != 3 || !json_is_integer(json_array_get(a, 0)) ||
            !json_is_integer(json_array_get(a, 1)) || !json_is_integer(json_array_get(a, 2))) {
            json_decref(j);
            cd_set_error(ctx, CD_ERR_FORMAT, "%s: axes_dims_rope must be a list of 3 integers", cfgp);
            return -1;
        }
        for (int i = 0; i < 3; i++) ax[i] = (int)json_integer_value(json_array_get(a, (size_t)i));
        json_t *t = json_object_get(j, "theta");
        if (t && json_is_number(t)) *theta = json_number_value(t);
        found = 1;
    }
    json_decref(j);
    return found;
}

static int parse_axes(const char *s, int ax[3]) {
    int n = 0;
    return s && sscanf(s, "%d,%d,%d%n", &ax[0], &ax[1], &ax[2], &n) == 3 && s[n] == 0;
}

static cd_status resolve_rope(cd_ctx *ctx, const char *path, const cd_ckpt *ck, const cd_flux_load_params *p, int hd,
                              cd_flux_model *m) {
    int ax[3] = {0, 0, 0};
    double theta = 0;
    const char *src = NULL;
    int r = config_json_rope(ctx, path, ax, &theta);
    if (r < 0) return CD_ERR_FORMAT;
    if (r > 0) {
        src = "config.json";
    } else if (cd_ckpt_meta(ck, "rope_axes")) {
        if (!parse_axes(cd_ckpt_meta(ck, "rope_axes"), ax))
            return cd_set_error(ctx, CD_ERR_FORMAT, "%s: metadata rope_axes '%s' is not \"A,B,C\"", path,
                                cd_ckpt_meta(ck, "rope_axes"));
        const char *t = cd_ckpt_meta(ck, "rope_theta");
        if (t) theta = strtod(t, NULL);
        src = "metadata";
    } else if (p && (p->rope_axes[0] | p->rope_axes[1] | p->rope_axes[2])) {
        memcpy(ax, p->rope_axes, sizeof ax);
        src = "flags";
    } else if (hd == 128) {
        ax[0] = 16;
        ax[1] = 56;
        ax[2] = 56;
        src = "FLUX default";
    } else {
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "%s: head_dim is %d, so FLUX's RoPE axes (16,56,56) do not apply; give them "
                            "with --rope-axes A,B,C (or a config.json with axes_dims_rope, or metadata rope_axes)",
                            path, hd);
    }
    if (theta == 0) theta = (p && p->rope_theta > 0) ? p->rope_theta : 10000.0;
    if (ax[0] < 0 || ax[1] < 0 || ax[2] < 0 || ax[0] + ax[1] + ax[2] != hd || (ax[0] | ax[1] | ax[2]) & 1 ||
        !(theta > 0))
        return cd_set_error(ctx, CD_ERR_INVALID_ARG,
                            "%s: RoPE axes %d,%d,%d (from %s) must be even and sum to head_dim %d, theta > 0", path,
                            ax[0], ax[1], ax[2], src, hd);
    memcpy(m->w.rope_axes, ax, sizeof ax);
    m->w.rope_theta = theta;
    m->rope_source = src;
    return CD_OK;
}

cd_status cd_flux_load(cd_ctx *ctx, const char *path, const cd_flux_load_params *p, cd_flux_model **out) {
    *out = NULL;
    cd_flux_model *m = calloc(1, sizeof *m);
    if (!m) return cd_set_error(ctx, CD_ERR_OOM, "flux: out of memory");
    cd_ckpt_info info;
    memset(&info, 0, sizeof info);
    cd_status s = cd_ckpt_open(ctx, path, &m->ck);
    if (s) goto fail;
    s = cd_ckpt_inspect(ctx, m->ck, &info);
    if (s) goto fail;
    if (info.layout != CD_LAYOUT_FLUX_BFL && info.layout != CD_LAYOUT_FLUX_DIFFUSERS) {
        s = cd_set_error(ctx, CD_ERR_FORMAT, "%s: not a FLUX transformer checkpoint (layout: %s)", path,
                         cd_layout_name(info.layout));
        goto fail;
    }
    if (info.n_missing || info.n_bad_shape) {
        s = cd_set_error(ctx, CD_ERR_FORMAT,
                         "%s: %zu missing and %zu wrong-shaped tensors (first: %s); "
                         "run 'cleardit inspect' for the list",
                         path, info.n_missing, info.n_bad_shape, info.n_missing ? info.missing[0] : info.bad_shape[0]);
        goto fail;
    }
    s = resolve_rope(ctx, path, m->ck, p, info.flux.head_dim, m);
    if (s) goto fail;
    {
        int ax[3];
        double th = m->w.rope_theta;
        const char *src = m->rope_source;
        memcpy(ax, m->w.rope_axes, sizeof ax);
        s = cd_flux_bind(ctx, m->ck, &info.flux, info.layout == CD_LAYOUT_FLUX_BFL, &m->w, &m->store);
        memcpy(m->w.rope_axes, ax, sizeof ax); /* bind resets the weights struct */
        m->w.rope_theta = th;
        m->rope_source = src;
    }
    if (s) goto fail;
    m->weight_bytes = (size_t)info.bytes;
    if (p && p->clear_weights) {
        s = cd_ckpt_open(ctx, p->clear_weights, &m->clear_ck);
        if (!s) s = cd_flux_bind_clear(ctx, m->clear_ck, &m->w, &m->clear_store);
        if (s) goto fail;
    }
    cd_ckpt_info_free(&info);
    *out = m;
    return CD_OK;
fail:
    cd_ckpt_info_free(&info);
    cd_flux_free(m);
    return s ? s : CD_ERR_INTERNAL;
}

const cd_flux_config *cd_flux_model_config(const cd_flux_model *m) { return &m->w.cfg; }

void cd_flux_model_rope(const cd_flux_model *m, int axes[3], double *theta, const char **source) {
    memcpy(axes, m->w.rope_axes, sizeof m->w.rope_axes);
    *theta = m->w.rope_theta;
    *source = m->rope_source;
}

int32_t cd_flux_model_clear_down(const cd_flux_model *m) { return m->w.spatial_down; }

float cd_flux_proportional_scale(int32_t head_dim, size_t T, size_t L, int32_t down) {
    const double n = (double)(T + L) * (down >= 2 ? 10.0 : 1.0);
    if (head_dim < 1 || n < 2) return 0.0f;
    return (float)sqrt(log(n) / log(4608.0) / (double)head_dim);
}

const char *cd_flux_model_meta(const cd_flux_model *m, const char *key) {
    return m && m->ck ? cd_ckpt_meta(m->ck, key) : NULL;
}

const cd_flux_weights *cd_flux_model_weights(const cd_flux_model *m) { return &m->w; }
