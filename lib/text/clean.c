/* The text clean-up of the official SimpleTokenizer, before the split regex:
 *
 *   bytes.decode('utf-8', errors='replace')         (the caller passes bytes)
 *   ftfy.fix_text(text)                             (ftfy 6.1.1 defaults, see below)
 *   html.unescape(html.unescape(text)).strip()
 *   re.sub(r'\s+', ' ', text).strip().lower()
 *
 * ftfy.fix_text works on segments (lines, at most 1,000,000 code points each) and repeats
 * its chain of fixes on each until nothing changes: unescape_html (only while no segment
 * so far held a '<'), fix_encoding, fix_c1_controls, fix_latin_ligatures,
 * fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates,
 * remove_terminal_escapes, remove_control_chars, NFC. fix_encoding (mojibake repair) is
 * NOT done here: see docs/tokenizer.md. fix_surrogates has nothing to do, since neither
 * the UTF-8 decoder nor the HTML unescaper ever yields a surrogate.
 */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define FTFY_MAX_SEGMENT 1000000 /* ftfy's TextFixerConfig.max_decode_length */
#define FTFY_MAX_PASSES 64       /* bound on fix_text's repeat-until-stable loop */

/* ------------------------------------------------------------------ buffers */

void tok_buf_free(tok_buf *b)
{
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

static int buf_reserve(tok_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / sizeof(uint32_t) - b->n)
        return -1;
    size_t need = b->n + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / (2 * sizeof(uint32_t)))
            return -1;
        cap *= 2;
    }
    uint32_t *v = realloc(b->v, cap * sizeof(uint32_t));
    if (!v)
        return -1;
    b->v = v;
    b->cap = cap;
    return 0;
}

static int buf_push(tok_buf *b, uint32_t cp)
{
    if (b->n == b->cap && buf_reserve(b, 1))
        return -1;
    b->v[b->n++] = cp;
    return 0;
}

static int buf_append(tok_buf *b, const uint32_t *cps, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n))
        return -1;
    memcpy(b->v + b->n, cps, n * sizeof(uint32_t));
    b->n += n;
    return 0;
}

/* Decode one valid UTF-8 character (the tables' own strings). */
static const char *utf8_next(const char *s, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80) {
        *cp = p[0];
        return s + 1;
    }
    if (p[0] < 0xE0) {
        *cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
        return s + 2;
    }
    if (p[0] < 0xF0) {
        *cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return s + 3;
    }
    *cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
          ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    return s + 4;
}

static int buf_push_utf8(tok_buf *b, const char *s)
{
    while (*s) {
        uint32_t cp;
        s = utf8_next(s, &cp);
        if (buf_push(b, cp))
            return -1;
    }
    return 0;
}

/* Python's bytes.decode('utf-8', errors='replace'): each maximal ill-formed subpart
 * becomes one U+FFFD (surrogates and overlong forms are ill-formed). */
static int decode_utf8_replace(const unsigned char *s, size_t len, tok_buf *out)
{
    if (buf_reserve(out, len))
        return -1;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            out->v[out->n++] = c;
            i++;
            continue;
        }
        int need;
        unsigned lo = 0x80, hi = 0xBF;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            out->v[out->n++] = 0xFFFD;
            i++;
            continue;
        }
        size_t j = i + 1;
        int ok = 1;
        for (int k = 0; k < need; k++, j++) {
            if (j >= len || s[j] < lo || s[j] > hi) {
                ok = 0;
                break;
            }
            cp = (cp << 6) | (s[j] & 0x3F);
            lo = 0x80; /* only the second byte has a narrowed range */
            hi = 0xBF;
        }
        out->v[out->n++] = ok ? cp : 0xFFFD;
        i = j;
    }
    return 0;
}

/* ------------------------------------------------------------------ Unicode classes */

static int in_ranges(uint32_t cp, const uint32_t (*r)[2], int n)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid - 1;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* `regex`'s \s: the White_Space property. */
int tok_is_regex_space(uint32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Python's str.isspace (used by str.strip): White_Space plus U+001C..U+001F. */
static int is_py_space(uint32_t cp)
{
    return tok_is_regex_space(cp) || (cp >= 0x1C && cp <= 0x1F);
}

int tok_is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

int tok_is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

static int is_ascii_alnum(uint32_t c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static int is_ascii_hex(uint32_t c)
{
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* ------------------------------------------------------------------ HTML entities */

/* Binary search `name` (ASCII, n chars) in a table sorted by byte order. */
static const char *entity_lookup(const tok_entity *table, int count, const char *name, size_t n)
{
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const char *t = table[mid].name;
        int c = strncmp(name, t, n);
        if (c == 0 && t[n] != '\0')
            c = -1;
        if (c < 0)
            hi = mid - 1;
        else if (c > 0)
            lo = mid + 1;
        else
            return table[mid].value;
    }
    return NULL;
}

/* Code points -> ASCII name; 0 if any is not ASCII (no entity name has such). */
static int ascii_name(const uint32_t *cps, size_t n, char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (cps[i] == 0 || cps[i] >= 0x80)
            return 0;
        name[i] = (char)cps[i];
    }
    name[n] = '\0';
    return 1;
}

/* The code point(s) html.unescape gives numeric reference `num` (big = beyond 0x10FFFF). */
static int push_numeric_ref(tok_buf *out, uint32_t num, int big)
{
    if (!big) {
        for (int i = 0; i < tok_n_invalid_charrefs; i++)
            if (tok_invalid_charrefs[i][0] == num)
                return buf_push(out, tok_invalid_charrefs[i][1]);
    }
    if (big || num > 0x10FFFF || (num >= 0xD800 && num <= 0xDFFF))
        return buf_push(out, 0xFFFD);
    for (int i = 0; i < tok_n_invalid_codepoints; i++)
        if (tok_invalid_codepoints[i] == num)
            return 0;
    return buf_push(out, num);
}

/* Python's html.unescape on in[0..n) appended to out: the regex
 * &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?) with the HTML5 rules. */
static int html_unescape(const uint32_t *in, size_t n, tok_buf *out)
{
    size_t i = 0;
    while (i < n) {
        if (in[i] != '&') {
            size_t j = i;
            while (j < n && in[j] != '&')
                j++;
            if (buf_append(out, in + i, j - i))
                return -1;
            i = j;
            continue;
        }
        size_t p = i + 1;
        if (p < n && in[p] == '#') {
            int hex = p + 1 < n && (in[p + 1] == 'x' || in[p + 1] == 'X') && p + 2 < n &&
                      is_ascii_hex(in[p + 2]);
            size_t d = p + 1 + (hex ? 1 : 0);
            if (!hex && !(d < n && in[d] >= '0' && in[d] <= '9')) {
                if (buf_push(out, '&'))
                    return -1;
                i++;
                continue;
            }
            uint32_t num = 0;
            int big = 0;
            while (d < n && (hex ? is_ascii_hex(in[d]) : (in[d] >= '0' && in[d] <= '9'))) {
                uint32_t c = in[d], v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
                if (!big) {
                    num = num * (hex ? 16 : 10) + v;
                    if (num > 0x10FFFF)
                        big = 1;
                }
                d++;
            }
            if (d < n && in[d] == ';')
                d++;
            if (push_numeric_ref(out, num, big))
                return -1;
            i = d;
            continue;
        }
        /* named: up to 32 characters, then an optional ';' */
        size_t e = p;
        while (e < n && e - p < 32) {
            uint32_t c = in[e];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' ||
                c == '#' || c == ';')
                break;
            e++;
        }
        if (e == p) {
            if (buf_push(out, '&'))
                return -1;
            i++;
            continue;
        }
        if (e < n && in[e] == ';')
            e++;
        size_t len = e - p;
        char name[40];
        const char *value = NULL;
        size_t used = 0;
        if (ascii_name(in + p, len, name)) {
            value = entity_lookup(tok_html5_entities, tok_n_html5_entities, name, len);
            used = len;
        }
        /* the longest prefix (at least 2 characters) that is an entity */
        for (size_t x = len - 1; !value && x >= 2; x--) {
            if (ascii_name(in + p, x, name)) {
                value = entity_lookup(tok_html5_entities, tok_n_html5_entities, name, x);
                used = x;
            }
        }
        if (value) {
            if (buf_push_utf8(out, value) || buf_append(out, in + p + used, len - used))
                return -1;
        } else if (buf_append(out, in + i, e - i)) {
            return -1;
        }
        i = e;
    }
    return 0;
}

/* ftfy's unescape_html: &#?[0-9A-Za-z]{1,24}; -> its HTML_ENTITIES table (named entities
 * with ';' and some upper-case spellings), or html.unescape for numeric ones unless that
 * leaves a ';'. */
static int ftfy_unescape_html(const uint32_t *in, size_t n, tok_buf *out)
{
    size_t i = 0;
    tok_buf tmp = {0};
    while (i < n) {
        if (in[i] != '&') {
            if (buf_push(out, in[i]))
                goto nomem;
            i++;
            continue;
        }
        size_t p = i + 1, q;
        int numeric = p < n && in[p] == '#';
        q = p + (numeric ? 1 : 0);
        size_t e = q;
        while (e < n && is_ascii_alnum(in[e]) && e - q <= 24)
            e++;
        if (e == q || e - q > 24 || e >= n || in[e] != ';') {
            if (buf_push(out, '&'))
                goto nomem;
            i++;
            continue;
        }
        e++; /* the ';' */
        if (!numeric) {
            char name[32];
            size_t len = e - p;
            ascii_name(in + p, len, name);
            const char *value = entity_lookup(tok_html5_entities, tok_n_html5_entities, name, len);
            if (!value)
                value = entity_lookup(tok_upper_entities, tok_n_upper_entities, name, len);
            if (value ? buf_push_utf8(out, value) : buf_append(out, in + i, e - i))
                goto nomem;
        } else {
            tmp.n = 0;
            if (html_unescape(in + i, e - i, &tmp))
                goto nomem;
            int has_semicolon = 0;
            for (size_t k = 0; k < tmp.n; k++)
                has_semicolon |= tmp.v[k] == ';';
            if (has_semicolon ? buf_append(out, in + i, e - i) : buf_append(out, tmp.v, tmp.n))
                goto nomem;
        }
        i = e;
    }
    tok_buf_free(&tmp);
    return 0;
nomem:
    tok_buf_free(&tmp);
    return -1;
}

/* ------------------------------------------------------------------ ftfy fixes */

/* fix_c1_controls: U+0080..U+009F decoded as (sloppy) Windows-1252. */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
    0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178};

/* fix_latin_ligatures */
static const char *ligature(uint32_t cp)
{
    switch (cp) {
    case 0x0132: return "IJ";
    case 0x0133: return "ij";
    case 0x0149: return "\xCA\xBCn";
    case 0x01F1: return "DZ";
    case 0x01F2: return "Dz";
    case 0x01F3: return "dz";
    case 0x01C4: return "D\xC5\xBD";
    case 0x01C5: return "D\xC5\xBE";
    case 0x01C6: return "d\xC5\xBE";
    case 0x01C7: return "LJ";
    case 0x01C8: return "Lj";
    case 0x01C9: return "lj";
    case 0x01CA: return "NJ";
    case 0x01CB: return "Nj";
    case 0x01CC: return "nj";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xC5\xBFt";
    case 0xFB06: return "st";
    default: return NULL;
    }
}

static const char *width_form(uint32_t cp)
{
    int lo = 0, hi = tok_n_width_map - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < tok_width_map[mid].cp)
            hi = mid - 1;
        else if (cp > tok_width_map[mid].cp)
            lo = mid + 1;
        else
            return tok_width_map[mid].value;
    }
    return NULL;
}

/* remove_control_chars */
static int is_removed_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static int is_py_decimal(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* One pass of the character-level fixes after unescape_html, in ftfy's order:
 * fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes,
 * fix_line_breaks, remove_terminal_escapes, remove_control_chars. Each fix sees the
 * previous one's output, so they run as separate passes. */
static int char_fixes(tok_buf *a, tok_buf *b)
{
    /* c1 controls, ligatures, width and quotes map single characters independently */
    b->n = 0;
    for (size_t i = 0; i < a->n; i++) {
        uint32_t c = a->v[i];
        if (c >= 0x80 && c <= 0x9F)
            c = cp1252_c1[c - 0x80];
        const char *s = ligature(c);
        if (s) {
            /* the ligature's letters then go through the width and quote maps: ASCII
               and U+02BC; U+02BC becomes "'" */
            for (const char *q = s; *q;) {
                uint32_t l;
                q = utf8_next(q, &l);
                if (buf_push(b, l == 0x02BC ? '\'' : l))
                    return -1;
            }
            continue;
        }
        s = (c == 0x3000 || (c >= 0xFF01 && c <= 0xFFEF)) ? width_form(c) : NULL;
        if (s) {
            for (const char *q = s; *q;) {
                uint32_t l;
                q = utf8_next(q, &l);
                if (l == 0x02BC || (l >= 0x2018 && l <= 0x201B))
                    l = '\'';
                else if (l >= 0x201C && l <= 0x201F)
                    l = '"';
                if (buf_push(b, l))
                    return -1;
            }
            continue;
        }
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        if (buf_push(b, c))
            return -1;
    }
    /* line breaks: \r\n, \r, U+2028, U+2029, U+0085 -> \n */
    a->n = 0;
    for (size_t i = 0; i < b->n; i++) {
        uint32_t c = b->v[i];
        if (c == '\r' && i + 1 < b->n && b->v[i + 1] == '\n')
            continue;
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        if (buf_push(a, c))
            return -1;
    }
    /* terminal escapes \033\[(\d|;)*[a-zA-Z], then control characters */
    b->n = 0;
    for (size_t i = 0; i < a->n; i++) {
        uint32_t c = a->v[i];
        if (c == 0x1B && i + 1 < a->n && a->v[i + 1] == '[') {
            size_t j = i + 2;
            while (j < a->n && (a->v[j] == ';' || is_py_decimal(a->v[j])))
                j++;
            if (j < a->n && a->v[j] < 0x80 && (a->v[j] | 0x20) >= 'a' && (a->v[j] | 0x20) <= 'z') {
                i = j;
                continue;
            }
        }
        if (buf_push(b, c))
            return -1;
    }
    a->n = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!is_removed_control(b->v[i]) && buf_push(a, b->v[i]))
            return -1;
    return 0;
}

static int is_nfc_blocker(uint32_t c)
{
    for (int i = 0; i < tok_n_nfc_blockers; i++)
        if (tok_nfc_blockers[i] == c)
            return 1;
    return 0;
}

static int ccc(uint32_t cp)
{
    return cp < 0x300 ? 0 : utf8proc_get_property((utf8proc_int32_t)cp)->combining_class;
}

/* Canonical ordering: a stable sort by combining class of each run of non-starters.
 * (libutf8proc's own reordering is a gnome sort, quadratic on long runs of marks.) */
static int canonical_order(uint32_t *v, size_t n, tok_buf *tmp)
{
    for (size_t i = 0; i < n;) {
        if (ccc(v[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && ccc(v[j]) != 0)
            j++;
        size_t len = j - i;
        if (len <= 16) { /* insertion sort */
            for (size_t k = i + 1; k < j; k++) {
                uint32_t c = v[k];
                int cc = ccc(c);
                size_t m = k;
                while (m > i && ccc(v[m - 1]) > cc) {
                    v[m] = v[m - 1];
                    m--;
                }
                v[m] = c;
            }
        } else { /* counting sort on the class, stable */
            size_t start[257] = {0};
            for (size_t k = i; k < j; k++)
                start[ccc(v[k]) + 1]++;
            for (int c = 1; c <= 256; c++)
                start[c] += start[c - 1];
            tmp->n = 0;
            if (buf_reserve(tmp, len))
                return -1;
            for (size_t k = i; k < j; k++)
                tmp->v[start[ccc(v[k])]++] = v[k];
            memcpy(v + i, tmp->v, len * sizeof *v);
        }
        i = j;
    }
    return 0;
}

/* NFC of in[0..n) appended to out: libutf8proc's canonical decomposition of each code
 * point, canonical ordering, then libutf8proc's composition. */
static int nfc_run(const uint32_t *in, size_t n, tok_buf *out, tok_buf *scratch)
{
    if (n == 0)
        return 0;
    scratch->n = 0;
    for (size_t i = 0; i < n; i++) {
        utf8proc_int32_t dec[32];
        int boundclass = 0;
        utf8proc_ssize_t r = utf8proc_decompose_char((utf8proc_int32_t)in[i], dec, 32,
                                                     UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                                                     &boundclass);
        if (r < 0 || r > 32 || buf_reserve(scratch, (size_t)r))
            return -1;
        for (utf8proc_ssize_t k = 0; k < r; k++)
            scratch->v[scratch->n++] = (uint32_t)dec[k];
    }
    tok_buf tmp = {0};
    int rc = canonical_order(scratch->v, scratch->n, &tmp);
    tok_buf_free(&tmp);
    if (rc)
        return -1;
    utf8proc_ssize_t m = utf8proc_normalize_utf32((utf8proc_int32_t *)scratch->v,
                                                  (utf8proc_ssize_t)scratch->n,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0)
        return -1;
    return buf_append(out, scratch->v, (size_t)m);
}

/* unicodedata.normalize('NFC'): code points below U+0300 are always stable; Python
 * (Unicode 14) sees tok_nfc_blockers as unassigned starters, so normalise around them. */
static int nfc(tok_buf *a, tok_buf *b, tok_buf *scratch)
{
    size_t i = 0;
    while (i < a->n && a->v[i] < 0x300)
        i++;
    if (i == a->n)
        return 0;
    b->n = 0;
    size_t start = 0;
    for (size_t k = 0; k <= a->n; k++) {
        if (k == a->n || is_nfc_blocker(a->v[k])) {
            if (nfc_run(a->v + start, k - start, b, scratch))
                return -1;
            if (k < a->n && buf_push(b, a->v[k]))
                return -1;
            start = k + 1;
        }
    }
    tok_buf t = *a;
    *a = *b;
    *b = t;
    return 0;
}

/* Nothing in ftfy's chain (without fix_encoding) can change this segment. */
static int ftfy_noop(const uint32_t *s, size_t n, int unescape)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c >= 0x80 || c == 0x1B || c == '\r' || is_removed_control(c) || (unescape && c == '&'))
            return 0;
    }
    return 1;
}

/* fix_and_explain on one segment (without fix_encoding), appended to out. */
static int ftfy_segment(const uint32_t *s, size_t n, int unescape, tok_buf *out)
{
    if (ftfy_noop(s, n, unescape))
        return buf_append(out, s, n);
    tok_buf cur = {0}, b = {0}, scratch = {0};
    int rc = -1;
    if (buf_append(&cur, s, n))
        goto done;
    for (int pass = 0; pass < FTFY_MAX_PASSES; pass++) {
        tok_buf orig = {0};
        if (buf_append(&orig, cur.v, cur.n))
            goto done;
        if (unescape) {
            b.n = 0;
            if (ftfy_unescape_html(cur.v, cur.n, &b)) {
                tok_buf_free(&orig);
                goto done;
            }
            tok_buf t = cur;
            cur = b;
            b = t;
        }
        if (char_fixes(&cur, &b) || nfc(&cur, &b, &scratch)) {
            tok_buf_free(&orig);
            goto done;
        }
        int same = orig.n == cur.n && (cur.n == 0 || !memcmp(orig.v, cur.v, cur.n * sizeof(uint32_t)));
        tok_buf_free(&orig);
        if (same)
            break;
    }
    rc = buf_append(out, cur.v, cur.n);
done:
    tok_buf_free(&cur);
    tok_buf_free(&b);
    tok_buf_free(&scratch);
    return rc;
}

/* ftfy.fix_text: segments end after '\n' or at max_decode_length code points; HTML
 * unescaping stops for good at the first segment that holds a '<'. */
static int ftfy_fix_text(const tok_buf *in, tok_buf *out)
{
    int unescape = 1;
    size_t pos = 0;
    while (pos < in->n) {
        size_t end = pos;
        while (end < in->n && in->v[end] != '\n')
            end++;
        end = end < in->n ? end + 1 : in->n;
        if (end - pos > FTFY_MAX_SEGMENT)
            end = pos + FTFY_MAX_SEGMENT;
        for (size_t i = pos; unescape && i < end; i++)
            if (in->v[i] == '<')
                unescape = 0;
        if (ftfy_segment(in->v + pos, end - pos, unescape, out))
            return -1;
        pos = end;
    }
    return 0;
}

/* ------------------------------------------------------------------ lower */

/* str.lower's Final_Sigma: capital sigma after a cased letter (skipping case-ignorable
 * ones) and not before one becomes final sigma. */
static int final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    uint32_t c = 0;
    int found = 0;
    while (j > 0) {
        c = s[--j];
        if (!in_ranges(c, tok_case_ignorable_ranges, tok_n_case_ignorable_ranges)) {
            found = 1;
            break;
        }
    }
    if (!found || !in_ranges(c, tok_cased_ranges, tok_n_cased_ranges))
        return 0;
    for (j = i + 1; j < n; j++) {
        c = s[j];
        if (!in_ranges(c, tok_case_ignorable_ranges, tok_n_case_ignorable_ranges))
            return !in_ranges(c, tok_cased_ranges, tok_n_cased_ranges);
    }
    return 1;
}

static int py_lower(const tok_buf *in, tok_buf *out)
{
    out->n = 0;
    if (buf_reserve(out, in->n))
        return -1;
    for (size_t i = 0; i < in->n; i++) {
        uint32_t c = in->v[i];
        if (c < 0x80) {
            out->v[out->n++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) { /* the one multi-character lowercase mapping */
            if (buf_push(out, 'i') || buf_push(out, 0x307))
                return -1;
        } else if (c == 0x3A3) {
            if (buf_push(out, final_sigma(in->v, in->n, i) ? 0x3C2 : 0x3C3))
                return -1;
        } else if (buf_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c))) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ the chain */

int tok_clean_text(const char *text, size_t len, tok_buf *out)
{
    tok_buf a = {0}, b = {0};
    int rc = -1;
    if (decode_utf8_replace((const unsigned char *)text, len, &a))
        goto done;
    if (ftfy_fix_text(&a, &b))
        goto done;
    /* html.unescape twice */
    a.n = 0;
    if (html_unescape(b.v, b.n, &a))
        goto done;
    b.n = 0;
    if (html_unescape(a.v, a.n, &b))
        goto done;
    /* strip, collapse \s+ to ' ', strip (the first strip cannot change the result of the
       collapse-and-strip except for U+001C..U+001F, which only str.strip removes) */
    size_t s = 0, e = b.n;
    while (s < e && is_py_space(b.v[s]))
        s++;
    while (e > s && is_py_space(b.v[e - 1]))
        e--;
    a.n = 0;
    if (buf_reserve(&a, e - s))
        goto done;
    for (size_t i = s; i < e;) {
        if (tok_is_regex_space(b.v[i])) {
            while (i < e && tok_is_regex_space(b.v[i]))
                i++;
            a.v[a.n++] = ' ';
        } else {
            a.v[a.n++] = b.v[i++];
        }
    }
    s = 0;
    e = a.n;
    while (s < e && is_py_space(a.v[s]))
        s++;
    while (e > s && is_py_space(a.v[e - 1]))
        e--;
    b.n = 0;
    /* a.v is NULL for empty text, and NULL + 0 is UB: don't form the pointer then */
    if (e > s && buf_append(&b, a.v + s, e - s))
        goto done;
    out->n = 0;
    if (py_lower(&b, out))
        goto done;
    rc = 0;
done:
    tok_buf_free(&a);
    tok_buf_free(&b);
    return rc;
}
