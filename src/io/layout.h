/* layout.h — library-private: checkpoint layouts as data.
 *
 * A layout pair (FLUX: BFL <-> diffusers; autoencoder: BFL <-> diffusers) is described ONCE, by
 * tables of rules (layout_flux.c, layout_ae.c). Expanding the rules for one config gives a plan:
 *  - for each side (0 = BFL names, 1 = diffusers names) the list of tensors that side expects,
 *    with their shapes, in module order;
 *  - segments: "rows [r0, r0+n) of BFL tensor a are rows [r1, r1+n) of diffusers tensor b".
 * Every split, fusion or swap is a set of segments along dim 0 (img_attn.qkv = to_q | to_k |
 * to_v; single linear1 = to_q | to_k | to_v | proj_mlp; final adaLN [shift|scale] = diffusers
 * [scale|shift]; a 1x1 conv [C,C,1,1] and a linear [C,C] have the same rows). Tensors are
 * row-major, so a row range is one contiguous byte range, and the same segments serve both
 * directions of a conversion (ckpt_convert.c) as well as the expected-tensor checks of inspect
 * (layout_inspect.c). A CLEAR file uses side 1 only (layout_clear.c).
 *
 * The dimension of each tensor is a symbol (lay_sym) resolved through a lay_env, so one rule
 * serves every config (and, for the autoencoder, every block of every level). */
#ifndef CD_LAYOUT_H
#define CD_LAYOUT_H

#include "st_internal.h"

/* Sides of a plan. */
enum { LAY_BFL = 0, LAY_DIF = 1 };

/* Largest block index accepted when counting blocks; names beyond it are simply unknown. */
#define LAY_MAX_BLOCKS 4096

/* Dimension symbols of the rule tables. */
typedef enum {
    SYM_ALL = 0, /* rows: the whole dim 0 of the tensor (never a shape entry) */
    /* FLUX transformer */
    SYM_D, /* hidden size */
    SYM_2D,
    SYM_3D,
    SYM_6D,
    SYM_M,    /* MLP hidden size */
    SYM_3D_M, /* single-block linear1 rows: q | k | v | mlp */
    SYM_D_M,  /* single-block linear2 columns: attn | mlp */
    SYM_HD,   /* head_dim (q/k RMSNorm scale) */
    SYM_IN,
    SYM_OUT,   /* FLUX: patch channels; autoencoder: set per part (see layout_ae.c) */
    SYM_CTX,   /* T5 context dim */
    SYM_VEC,   /* pooled CLIP dim */
    SYM_TFREQ, /* sinusoidal timestep embedding width, 256 */
    /* autoencoder (set per block while expanding) */
    SYM_CIN,
    SYM_COUT, /* ResnetBlock in/out channels */
    SYM_C,    /* channels of an attention block, up/down sampler, norm_out, conv_in/out */
    SYM_COUNT
} lay_sym;

/* The form of CLEAR's spatial_weight tensors: d x d elements in a shape whose other dimensions
 * are 1 — the reference trainer saves nn.Parameter(ones(1, 1, 1, d, 1, d, 1)), a plain [d, d]
 * works as well. One form per checkpoint (the one most layers use). */
typedef struct {
    int32_t down; /* d >= 2; 0 = no spatial weights */
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
} lay_spatial;

typedef struct {
    int64_t v[SYM_COUNT];
    const lay_spatial *sw; /* for RK_SPATIAL */
} lay_env;

/* What one rule produces (NAME = prefix + the rule's name on that side). */
typedef enum {
    RK_LINEAR,    /* NAME.weight [out, in] + NAME.bias [out] */
    RK_CONV3,     /* NAME.weight [out, in, 3, 3] + NAME.bias [out] */
    RK_CONV1,     /* NAME.weight [out, in, 1, 1] + NAME.bias [out] */
    RK_CONV1_LIN, /* BFL: NAME.weight [out, in, 1, 1]; diffusers: NAME.weight [out, in]; + bias */
    RK_AFFINE,    /* NAME.weight [out] + NAME.bias [out] (GroupNorm) */
    RK_VECTOR,    /* NAME [out] (RMSNorm scale; the rule's name is the full tensor name) */
    RK_SPATIAL    /* NAME in the lay_spatial form of the env (spatial_weight) */
} lay_kind;

/* One rule: a piece of a tensor on each side. For a plain rename both sides are whole tensors;
 * a fused tensor appears in several rules, each naming its rows. */
typedef struct {
    uint8_t kind;        /* lay_kind */
    const char *name[2]; /* per side; NULL = the side has no such tensor (CLEAR: side 0) */
    uint8_t out[2];      /* dim 0 of the whole tensor per side (lay_sym) */
    uint8_t in;          /* dim 1 (both sides) */
    uint8_t off[2];      /* first row of this piece per side, in units of SYM_D */
    uint8_t rows;        /* rows of the piece (lay_sym); SYM_ALL = all of dim 0 */
} lay_rule;

typedef struct {
    char *name;
    int32_t ndim;
    int64_t shape[CD_MAX_DIMS];
} lay_tensor;

/* Rows [row[0], row[0]+rows) of side-0 tensor t[0] are rows [row[1], row[1]+rows) of side-1
 * tensor t[1]. Units: rows of dim 0 (one element for 1-D tensors). */
typedef struct {
    uint32_t t[2];
    int64_t row[2];
    int64_t rows;
} lay_seg;

/* The tensors of one side, in insertion (module) order, with a name hash for lookups. */
typedef struct {
    lay_tensor *t;
    size_t n, cap;
    uint32_t *slot; /* open addressing: index + 1, 0 = empty */
    size_t nslot;   /* power of two */
} lay_set;

typedef struct {
    lay_set side[2];
    lay_seg *seg;
    size_t nseg, segcap;
} lay_plan;

/* FLUX config as the tables need it: the public config plus the carried spatial weights. */
typedef struct {
    cd_flux_config c;
    lay_spatial sw; /* sw.down == 0: no spatial_weight tensors */
} lay_flux_cfg;

/* ---- plan (layout_plan.c) ----------------------------------------------------------------- */
void lay_plan_init(lay_plan *p);
void lay_plan_free(lay_plan *p);
/* Expands `n` rules under the prefixes (pre[side] is prepended to the rule's name on that side;
 * NULL pre[side] skips the side). Returns 0, or -1 when out of memory. */
int lay_plan_emit(lay_plan *p, const lay_rule *rules, size_t n, const char *const pre[2], const lay_env *env);
/* Index of `name` in the set, or -1. */
long lay_set_find(const lay_set *s, const char *name);
/* Adds a tensor to one side's set (layouts built without rules: layout_textenc.c); its index, or
 * -1 when out of memory. */
long lay_set_add(lay_set *s, const char *name, int32_t ndim, const int64_t *shape);

/* "double_blocks.12." -> 12 for prefix "double_blocks."; -1 unless digits and a '.' follow. */
long lay_block_index(const char *name, const char *prefix);
/* 1 + the largest block index of any tensor named prefix + "N." (N < LAY_MAX_BLOCKS), 0 if none. */
int32_t lay_count_blocks(const cd_ckpt *c, const char *prefix);
/* 1 if some tensor name starts with prefix. */
int lay_has_prefix(const cd_ckpt *c, const char *prefix);

/* Voting inference of one config field: the value that most present probes agree on. */
typedef struct {
    const char *name; /* tensor name */
    uint8_t dim;      /* which dim of its shape */
    uint8_t minus_d;  /* value = shape[dim] - minus_d * hidden */
    uint8_t div;      /* value = (...) / div when div > 1 */
} lay_probe;
/* Returns the agreed value (> 0), or 0 when no probe tensor is present with a usable shape.
 * Ties go to the earlier probe. */
int64_t lay_vote(const cd_ckpt *c, const lay_probe *p, size_t n, int64_t hidden);

/* ---- the layouts ---------------------------------------------------------------------------- */
/* Each infer returns 0 and fills the config, or -1 with need[LAY_NAME_MAX] = the name of a
 * tensor that would have given a required field (none of that field's probes is present). */
#define LAY_NAME_MAX 256
int lay_flux_infer(const cd_ckpt *c, int side, lay_flux_cfg *cfg, char *need);
int lay_flux_plan(const lay_flux_cfg *cfg, int sides, lay_plan *p); /* sides: bit 1 << side */
int lay_ae_infer(const cd_ckpt *c, int side, cd_ae_config *cfg, char *need);
int lay_ae_plan(const cd_ae_config *cfg, int sides, lay_plan *p);
int lay_clear_infer(const cd_ckpt *c, cd_clear_config *cfg, lay_spatial *sw, char *need);
int lay_clear_plan(const cd_clear_config *cfg, const lay_spatial *sw, lay_plan *p); /* side 1 */
/* 1 if `name` is one of the tensors a CLEAR file may hold (layout_clear.c). */
int lay_is_clear_name(const char *name);

/* Spatial-weight tensors (CLEAR's down-sampled variant) keep their diffusers names everywhere:
 * "transformer_blocks.N.attn.processor.spatial_weight", "single_transformer_blocks.N...". */
#define LAY_SPATIAL_SUFFIX "attn.processor.spatial_weight"
int lay_is_spatial_weight(const char *name);
/* The form most spatial weights present share (sw->down = 0 if none has a valid form). */
void lay_spatial_infer(const cd_ckpt *c, lay_spatial *sw);

/* Text encoders (layout_textenc.c): the config from the shapes and a config.json beside the
 * checkpoint's first file, and the expected tensors on side LAY_DIF (optional tensors that are
 * present, such as a second embedding name or scale_weight scalars, are expected; absent ones are
 * not). A field on which config.json and the shapes disagree is written into conflict. Returns
 * -1 when out of memory. */
int lay_t5_build(const cd_ckpt *c, cd_t5_info *cfg, lay_plan *p, char *need, char *conflict);
int lay_clip_build(const cd_ckpt *c, cd_clip_info *cfg, lay_plan *p, char *need, char *conflict);

/* Layout of a checkpoint from its names alone (layout_inspect.c). */
cd_layout lay_detect(const cd_ckpt *c);

/* FLUX layouts and AE layouts as plan sides. */
static inline int lay_is_flux(cd_layout l) { return l == CD_LAYOUT_FLUX_BFL || l == CD_LAYOUT_FLUX_DIFFUSERS; }
static inline int lay_is_ae(cd_layout l) { return l == CD_LAYOUT_AE_BFL || l == CD_LAYOUT_AE_DIFFUSERS; }
static inline int lay_is_textenc(cd_layout l) { return l == CD_LAYOUT_T5 || l == CD_LAYOUT_CLIP_TEXT; }
static inline int lay_side(cd_layout l) {
    return (l == CD_LAYOUT_FLUX_BFL || l == CD_LAYOUT_AE_BFL) ? LAY_BFL : LAY_DIF;
}

/* The config and expected tensors of a checkpoint in a known layout (layout_inspect.c):
 * infers the config and builds the plan with `sides` (always including the checkpoint's own
 * side). On an inference failure *need names the missing tensor and the plan stays empty. */
typedef struct {
    cd_layout layout;
    lay_flux_cfg flux;
    cd_ae_config ae;
    cd_clear_config clear;
    lay_spatial clear_sw; /* the CLEAR file's spatial weights */
    cd_t5_info t5;
    cd_clip_info clip;
    char need[LAY_NAME_MAX];     /* non-empty when the config could not be inferred */
    char conflict[LAY_NAME_MAX]; /* non-empty when config.json disagrees with the shapes */
} lay_model;
cd_status lay_model_build(cd_ctx *ctx, const cd_ckpt *c, cd_layout layout, int sides, lay_model *m, lay_plan *p);

/* "[2, 3, 4]" into buf. */
const char *lay_shape_str(const int64_t *shape, int32_t ndim, char *buf, size_t cap);

#endif
