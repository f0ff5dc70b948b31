/* unicode_nfc.c — Unicode Normalization Form C (UAX #15): full canonical decomposition, canonical
 * ordering of combining marks, then canonical composition; the data is generated into
 * src/text/unicode_nfc_tables.c (Unicode version there). HF tokenizers' NFC normaliser runs
 * first in CLIP's normaliser (docs/tokenizer_clip.md). */
#include "unicode_tables.h"

/* Hangul syllables decompose and compose by arithmetic (Unicode chapter 3.12). */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_N = 19, V_N = 21, T_N = 28 };
enum { N_N = V_N * T_N, S_N = L_N * N_N };

static size_t find_row(const uint32_t (*t)[3], size_t n, uint32_t key) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (t[mid][0] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo; /* first row with t[row][0] >= key */
}

static unsigned ccc(uint32_t cp) {
    size_t lo = 0, hi = cd_uc_ccc_n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (cp < cd_uc_ccc[mid][0])
            hi = mid;
        else if (cp > cd_uc_ccc[mid][1])
            lo = mid + 1;
        else
            return cd_uc_ccc[mid][2];
    }
    return 0;
}

/* Full canonical decomposition of cp appended at out; returns the count (<= 4 by Unicode's data,
 * checked by scripts/gen_unicode_tables.py's tables having at most two parts per level). */
static size_t decompose(uint32_t cp, uint32_t *out, int depth) {
    if (cp >= S_BASE && cp < S_BASE + S_N) {
        const uint32_t s = cp - S_BASE, t = s % T_N;
        out[0] = L_BASE + s / N_N;
        out[1] = V_BASE + (s % N_N) / T_N;
        if (t) out[2] = T_BASE + t;
        return t ? 3 : 2;
    }
    const size_t r = find_row(cd_uc_decomp, cd_uc_decomp_n, cp);
    if (depth > 8 || r == cd_uc_decomp_n || cd_uc_decomp[r][0] != cp) return out[0] = cp, 1;
    size_t k = decompose(cd_uc_decomp[r][1], out, depth + 1);
    if (cd_uc_decomp[r][2]) k += decompose(cd_uc_decomp[r][2], out + k, depth + 1);
    return k;
}

static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_N && b >= V_BASE && b < V_BASE + V_N)
        return S_BASE + ((a - L_BASE) * V_N + (b - V_BASE)) * T_N;
    if (a >= S_BASE && a < S_BASE + S_N && (a - S_BASE) % T_N == 0 && b > T_BASE && b < T_BASE + T_N)
        return a + (b - T_BASE);
    size_t lo = 0, hi = cd_uc_comp_n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const uint32_t *c = cd_uc_comp[mid];
        if (c[0] < a || (c[0] == a && c[1] < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < cd_uc_comp_n && cd_uc_comp[lo][0] == a && cd_uc_comp[lo][1] == b ? cd_uc_comp[lo][2] : 0;
}

size_t cd_uc_nfc(const uint32_t *in, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += decompose(in[i], out + k, 0);
    /* canonical order: a stable sort of each run of non-starters by class (runs are short) */
    for (size_t i = 1; i < k; i++) {
        const uint32_t c = out[i];
        const unsigned cc = ccc(c);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0 && ccc(out[j - 1]) > cc) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = c;
    }
    /* compose: a mark joins the last starter unless a mark of the same or higher class, or a
     * starter, stands between them (blocked) */
    size_t w = 0, starter = (size_t)-1;
    for (size_t i = 0; i < k; i++) {
        const uint32_t c = out[i];
        const unsigned cc = ccc(c);
        if (starter != (size_t)-1 && (w - 1 == starter || ccc(out[w - 1]) < cc)) {
            const uint32_t p = compose(out[starter], c);
            if (p) {
                out[starter] = p;
                continue;
            }
        }
        out[w++] = c;
        if (cc == 0) starter = w - 1;
    }
    return w;
}
