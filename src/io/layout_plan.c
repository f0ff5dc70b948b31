/* layout_plan.c — expanding layout rules into a plan (tensors per side + row segments), name
 * lookups, and the small shape-probing helpers the config inference of layout_flux.c,
 * layout_ae.c and layout_clear.c share. See layout.h for what a plan is. */
#include "layout.h"

#include <stdio.h>
#include <stdlib.h>

void lay_plan_init(lay_plan *p) { memset(p, 0, sizeof *p); }

static void set_free(lay_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->t);
    free(s->slot);
}

void lay_plan_free(lay_plan *p) {
    if (!p) return;
    set_free(&p->side[0]);
    set_free(&p->side[1]);
    free(p->seg);
    lay_plan_init(p);
}

/* FNV-1a: names differ mostly in a few digits, which FNV mixes well enough for ~10^3 names. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

long lay_set_find(const lay_set *s, const char *name) {
    if (!s->nslot) return -1;
    for (size_t i = (size_t)name_hash(name) & (s->nslot - 1);; i = (i + 1) & (s->nslot - 1)) {
        uint32_t v = s->slot[i];
        if (!v) return -1;
        if (!strcmp(s->t[v - 1].name, name)) return (long)(v - 1);
    }
}

/* Keeps the table at most half full. */
static int set_rehash(lay_set *s) {
    size_t nslot = s->nslot ? s->nslot * 2 : 64;
    uint32_t *slot = calloc(nslot, sizeof *slot);
    if (!slot) return -1;
    for (size_t k = 0; k < s->n; k++) {
        size_t i = (size_t)name_hash(s->t[k].name) & (nslot - 1);
        while (slot[i]) i = (i + 1) & (nslot - 1);
        slot[i] = (uint32_t)(k + 1);
    }
    free(s->slot);
    s->slot = slot;
    s->nslot = nslot;
    return 0;
}

/* Index of `name` in the set, added with `shape` if absent. -1 when out of memory. A fused tensor
 * is named by several rules; they agree on its shape by construction of the tables. */
static long set_add(lay_set *s, const char *name, int32_t ndim, const int64_t *shape) {
    long found = lay_set_find(s, name);
    if (found >= 0) return found;
    if (s->n >= UINT32_MAX - 1) return -1;
    if (2 * (s->n + 1) > s->nslot && set_rehash(s)) return -1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        lay_tensor *t = realloc(s->t, cap * sizeof *t);
        if (!t) return -1;
        s->t = t;
        s->cap = cap;
    }
    lay_tensor *t = &s->t[s->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return -1;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    size_t i = (size_t)name_hash(name) & (s->nslot - 1);
    while (s->slot[i]) i = (i + 1) & (s->nslot - 1);
    s->slot[i] = (uint32_t)(s->n + 1);
    return (long)s->n++;
}

long lay_set_add(lay_set *s, const char *name, int32_t ndim, const int64_t *shape) {
    return set_add(s, name, ndim, shape);
}

static int add_seg(lay_plan *p, const long t[2], const int64_t row[2], int64_t rows) {
    if (p->nseg == p->segcap) {
        size_t cap = p->segcap ? 2 * p->segcap : 128;
        lay_seg *s = realloc(p->seg, cap * sizeof *s);
        if (!s) return -1;
        p->seg = s;
        p->segcap = cap;
    }
    lay_seg *s = &p->seg[p->nseg++];
    s->t[0] = (uint32_t)t[0];
    s->t[1] = (uint32_t)t[1];
    s->row[0] = row[0];
    s->row[1] = row[1];
    s->rows = rows;
    return 0;
}

/* Shapes of the (up to two) tensors one rule names on a side: [0] the weight-like tensor,
 * [1] the bias (ndim 0 when the kind has none). */
static int rule_shapes(const lay_rule *r, int side, const lay_env *e, int32_t nd[2], int64_t sh[2][CD_MAX_DIMS]) {
    const int64_t out = e->v[r->out[side]], in = e->v[r->in];
    nd[1] = 1;
    sh[1][0] = out;
    switch ((lay_kind)r->kind) {
        case RK_LINEAR:
            nd[0] = 2;
            sh[0][0] = out;
            sh[0][1] = in;
            break;
        case RK_CONV3:
        case RK_CONV1: {
            const int64_t k = r->kind == RK_CONV3 ? 3 : 1;
            nd[0] = 4;
            sh[0][0] = out;
            sh[0][1] = in;
            sh[0][2] = k;
            sh[0][3] = k;
            break;
        }
        case RK_CONV1_LIN:
            nd[0] = side == LAY_BFL ? 4 : 2;
            sh[0][0] = out;
            sh[0][1] = in;
            sh[0][2] = 1;
            sh[0][3] = 1;
            break;
        case RK_AFFINE:
            nd[0] = 1;
            sh[0][0] = out;
            break;
        case RK_VECTOR:
            nd[0] = 1;
            sh[0][0] = out;
            nd[1] = 0;
            break;
        case RK_SPATIAL:
            if (!e->sw || e->sw->ndim < 1 || e->sw->ndim > CD_MAX_DIMS) return -1;
            nd[0] = e->sw->ndim;
            memcpy(sh[0], e->sw->shape, (size_t)nd[0] * sizeof sh[0][0]);
            nd[1] = 0;
            break;
        default: return -1;
    }
    return 0;
}

int lay_plan_emit(lay_plan *p, const lay_rule *rules, size_t n, const char *const pre[2], const lay_env *env) {
    char name[2][256];
    for (size_t i = 0; i < n; i++) {
        const lay_rule *r = &rules[i];
        long idx[2][2] = {{-1, -1}, {-1, -1}}; /* [side][weight, bias] */
        int64_t row[2] = {0, 0}, rows = 0;
        for (int side = 0; side < 2; side++) {
            if (!pre[side] || !r->name[side]) continue;
            int32_t nd[2];
            int64_t sh[2][CD_MAX_DIMS];
            if (rule_shapes(r, side, env, nd, sh)) return -1;
            const int plain = r->kind == RK_VECTOR || r->kind == RK_SPATIAL;
            for (int k = 0; k < 2; k++) {
                if (!nd[k]) continue;
                snprintf(name[side], sizeof name[side], "%s%s%s", pre[side], r->name[side],
                         plain ? "" : (k ? ".bias" : ".weight"));
                idx[side][k] = set_add(&p->side[side], name[side], nd[k], sh[k]);
                if (idx[side][k] < 0) return -1;
            }
            row[side] = (int64_t)r->off[side] * env->v[SYM_D];
            rows = r->kind == RK_SPATIAL ? sh[0][0] : r->rows == SYM_ALL ? env->v[r->out[side]] : env->v[r->rows];
        }
        /* Segments only where both sides exist (a one-sided plan is just an expected set). */
        for (int k = 0; k < 2; k++) {
            if (idx[0][k] < 0 || idx[1][k] < 0) continue;
            const long t[2] = {idx[0][k], idx[1][k]};
            if (add_seg(p, t, row, rows)) return -1;
        }
    }
    return 0;
}

long lay_block_index(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n)) return -1;
    const char *s = name + n;
    long v = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (digits == 0 && *s == '0' && s[1] >= '0' && s[1] <= '9') return -1; /* "01" */
        v = v * 10 + (*s - '0');
        if (v >= LAY_MAX_BLOCKS) return -1;
    }
    return digits && *s == '.' ? v : -1;
}

int32_t lay_count_blocks(const cd_ckpt *c, const char *prefix) {
    long best = -1;
    for (size_t i = 0, n = cd_ckpt_count(c); i < n; i++) {
        long b = lay_block_index(cd_ckpt_at(c, i)->name, prefix);
        if (b > best) best = b;
    }
    return (int32_t)(best + 1);
}

int lay_has_prefix(const cd_ckpt *c, const char *prefix) {
    size_t n = strlen(prefix);
    for (size_t i = 0, cnt = cd_ckpt_count(c); i < cnt; i++)
        if (!strncmp(cd_ckpt_at(c, i)->name, prefix, n)) return 1;
    return 0;
}

int64_t lay_vote(const cd_ckpt *c, const lay_probe *p, size_t n, int64_t hidden) {
    int64_t val[32];
    size_t nv = 0;
    for (size_t i = 0; i < n && nv < 32; i++) {
        const cd_st_tensor *t = cd_ckpt_find(c, p[i].name);
        if (!t || p[i].dim >= t->ndim) continue;
        int64_t v = t->shape[p[i].dim] - (int64_t)p[i].minus_d * hidden;
        if (p[i].div > 1) {
            if (v % p[i].div) continue;
            v /= p[i].div;
        }
        if (v > 0 && v <= INT32_MAX) val[nv++] = v;
    }
    int64_t best = 0;
    size_t best_n = 0;
    for (size_t i = 0; i < nv; i++) {
        size_t k = 0;
        for (size_t j = 0; j < nv; j++) k += val[j] == val[i];
        if (k > best_n) {
            best = val[i];
            best_n = k;
        }
    }
    return best;
}

int lay_is_spatial_weight(const char *name) {
    const char *sfx = "." LAY_SPATIAL_SUFFIX;
    long b = lay_block_index(name, "transformer_blocks.");
    const char *pre = "transformer_blocks.";
    if (b < 0) {
        b = lay_block_index(name, "single_transformer_blocks.");
        pre = "single_transformer_blocks.";
    }
    if (b < 0) return 0;
    const char *rest = name + strlen(pre);
    while (*rest >= '0' && *rest <= '9') rest++;
    return !strcmp(rest, sfx);
}

/* d when the shape holds d x d elements with every other dimension 1 (d >= 2), else 0. */
static int64_t spatial_side(const cd_st_tensor *t) {
    int64_t d = 0;
    int big = 0;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1) continue;
        if (big++ && t->shape[i] != d) return 0;
        d = t->shape[i];
    }
    return big == 2 && d >= 2 && d <= INT32_MAX ? d : 0;
}

void lay_spatial_infer(const cd_ckpt *c, lay_spatial *sw) {
    /* Vote over the spatial weights present; a handful of distinct forms is plenty (a file has
     * one), so the tally is a short fixed table and the scan stays linear. */
    const cd_st_tensor *form[16];
    size_t cnt[16], nf = 0;
    memset(sw, 0, sizeof *sw);
    for (size_t i = 0, n = cd_ckpt_count(c); i < n; i++) {
        const cd_st_tensor *t = cd_ckpt_at(c, i);
        if (!lay_is_spatial_weight(t->name) || !spatial_side(t)) continue;
        size_t k = 0;
        while (k < nf &&
               (form[k]->ndim != t->ndim || memcmp(form[k]->shape, t->shape, (size_t)t->ndim * sizeof t->shape[0])))
            k++;
        if (k == nf) {
            if (nf == 16) continue;
            form[nf] = t;
            cnt[nf++] = 0;
        }
        cnt[k]++;
    }
    if (!nf) return;
    size_t best = 0;
    for (size_t k = 1; k < nf; k++)
        if (cnt[k] > cnt[best]) best = k;
    sw->down = (int32_t)spatial_side(form[best]);
    sw->ndim = form[best]->ndim;
    memcpy(sw->shape, form[best]->shape, (size_t)sw->ndim * sizeof sw->shape[0]);
}

const char *lay_shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}
