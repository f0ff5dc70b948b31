/* grapheme.c — extended grapheme cluster boundaries, the rules GB3..GB13 of UAX #29 (Unicode 14,
 * the tables' version). GB9c (Unicode 15.1, Indic conjuncts) is not applied: it only joins
 * clusters of three or more 3-byte characters, which the one user (spm_hf.c) treats character by
 * character either way (clusters of 6 bytes or more). */
#include "grapheme.h"

static uint32_t lookup(const uint32_t (*t)[3], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (cp < t[mid][0])
            hi = mid;
        else if (cp > t[mid][1])
            lo = mid + 1;
        else
            return t[mid][2];
    }
    return 0;
}

/* decodes one character of valid UTF-8; *len its byte length */
static uint32_t decode(const uint8_t *s, size_t n, size_t *len) {
    const uint8_t c = s[0];
    size_t l = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (l > n) l = n;
    uint32_t cp = l == 1 ? c : l == 2 ? c & 0x1fu : l == 3 ? c & 0x0fu : c & 0x07u;
    for (size_t i = 1; i < l; i++) cp = cp << 6 | (s[i] & 0x3fu);
    *len = l;
    return cp;
}

size_t cd_grapheme_len(const uint8_t *s, size_t n) {
    size_t l0;
    uint32_t cp = decode(s, n, &l0);
    uint32_t prev = lookup(cd_gcb_ranges, cd_gcb_ranges_n, cp);
    /* GB11: an Extended_Pictographic, then Extend*, then ZWJ; GB12/13: regional indicators in pairs */
    int emoji = lookup(cd_extpict_ranges, cd_extpict_ranges_n, cp) ? 1 : 0; /* 1: ExtPict Extend*, 2: + ZWJ */
    size_t ri = prev == CD_GCB_RI, i = l0;
    while (i < n) {
        size_t l;
        cp = decode(s + i, n - i, &l);
        const uint32_t cur = lookup(cd_gcb_ranges, cd_gcb_ranges_n, cp);
        const int pict = lookup(cd_extpict_ranges, cd_extpict_ranges_n, cp) != 0;
        int join;
        if (prev == CD_GCB_CR && cur == CD_GCB_LF)
            join = 1; /* GB3 */
        else if (prev == CD_GCB_CR || prev == CD_GCB_LF || prev == CD_GCB_CONTROL)
            join = 0; /* GB4 */
        else if (cur == CD_GCB_CR || cur == CD_GCB_LF || cur == CD_GCB_CONTROL)
            join = 0; /* GB5 */
        else if (prev == CD_GCB_L && (cur == CD_GCB_L || cur == CD_GCB_V || cur == CD_GCB_LV || cur == CD_GCB_LVT))
            join = 1; /* GB6 */
        else if ((prev == CD_GCB_LV || prev == CD_GCB_V) && (cur == CD_GCB_V || cur == CD_GCB_T))
            join = 1; /* GB7 */
        else if ((prev == CD_GCB_LVT || prev == CD_GCB_T) && cur == CD_GCB_T)
            join = 1; /* GB8 */
        else if (cur == CD_GCB_EXTEND || cur == CD_GCB_ZWJ || cur == CD_GCB_SPACINGMARK)
            join = 1; /* GB9, GB9a */
        else if (prev == CD_GCB_PREPEND)
            join = 1; /* GB9b */
        else if (emoji == 2 && pict)
            join = 1; /* GB11 */
        else if (prev == CD_GCB_RI && cur == CD_GCB_RI)
            join = ri % 2 == 1; /* GB12, GB13 */
        else
            join = 0; /* GB999 */
        if (!join) break;
        /* the emoji state after cur */
        if (pict)
            emoji = 1;
        else if (emoji == 1 && cur == CD_GCB_ZWJ)
            emoji = 2;
        else if (!(emoji == 1 && cur == CD_GCB_EXTEND))
            emoji = 0;
        ri = cur == CD_GCB_RI ? ri + 1 : 0;
        prev = cur;
        i += l;
    }
    return i;
}
