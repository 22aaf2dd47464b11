/* Display width, truncation and control-character neutralisation (cli_text.h). */
#include "cli_text.h"

#include <string.h>
#include <utf8proc.h>

/* The next character of s: its bytes (*len), and its rendering in *shown: the character
 * itself, or an escape for a control character or an invalid byte. Returns its columns. */
static int next_char(const char *s, size_t *len, char shown[16])
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s, -1, &cp);
    if (n < 1) { /* an invalid byte */
        *len = 1;
        snprintf(shown, 16, "\\x%02x", (unsigned char)*s);
        return 4;
    }
    *len = (size_t)n;
    utf8proc_category_t cat = utf8proc_category(cp);
    if (cat == UTF8PROC_CATEGORY_CC || cp == 0x2028 || cp == 0x2029 ||
        (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
        /* C0/C1 controls, line separators and bidi overrides would move the cursor or
         * reorder the line: show them as escapes */
        int k = cp < 0x100 ? snprintf(shown, 16, "\\x%02x", (unsigned)cp)
                           : snprintf(shown, 16, "\\u%04x", (unsigned)cp);
        return k;
    }
    memcpy(shown, s, (size_t)n);
    shown[n] = '\0';
    int w = utf8proc_charwidth(cp);
    return w < 0 ? 0 : w;
}

int cli_text_width(const char *s)
{
    int w = 0;
    char shown[16];
    size_t len;
    for (; s && *s; s += len)
        w += next_char(s, &len, shown);
    return w;
}

int cli_text_fit(const char *s, int width, char *out, size_t cap)
{
    static const char ellipsis[] = "\xe2\x80\xa6"; /* U+2026, one column */
    size_t o = 0;
    int used = 0;
    char shown[16];
    size_t len;
    if (!cap)
        return 0;
    out[0] = '\0';
    if (!s)
        return 0;
    int fits = cli_text_width(s) <= width;
    for (; *s; s += len) {
        int w = next_char(s, &len, shown);
        size_t k = strlen(shown);
        /* when cutting, keep one column (and its bytes) for the ellipsis */
        int room = fits ? width : width - 1;
        if (used + w > room || o + k + (fits ? 0 : 3) >= cap)
            break;
        memcpy(out + o, shown, k);
        o += k;
        used += w;
    }
    if (!fits && width >= 1 && o + 3 < cap) {
        memcpy(out + o, ellipsis, 3);
        o += 3;
        used++;
    }
    out[o] = '\0';
    return used;
}

int cli_text_fit_middle(const char *s, int width, char *out, size_t cap)
{
    if (!s || cli_text_width(s) <= width || width < 8)
        return cli_text_fit(s, width, out, cap);
    /* the tail: the last characters filling about a third of the columns */
    int tail_w = (width - 1) / 3, used = 0;
    const char *tail = s + strlen(s);
    size_t len;
    char shown[16];
    int rest = cli_text_width(s);
    for (const char *p = s; *p; p += len) {
        /* walk forward: the tail starts at the first character after which the rest fits */
        if (rest <= tail_w) {
            tail = p;
            used = rest;
            break;
        }
        rest -= next_char(p, &len, shown);
    }
    int head = cli_text_fit(s, width - used, out, cap); /* ends in the ellipsis */
    size_t o = strlen(out);
    for (const char *p = tail; *p; p += len) {
        next_char(p, &len, shown);
        size_t k = strlen(shown);
        if (o + k >= cap)
            break;
        memcpy(out + o, shown, k);
        o += k;
    }
    out[o] = '\0';
    return head + used;
}

void cli_print_cell(FILE *f, const char *s, int width)
{
    char buf[1024];
    int used = cli_text_fit_middle(s, width, buf, sizeof buf);
    fputs(buf, f);
    for (; used < width; used++)
        fputc(' ', f);
}

void cli_print_text(FILE *f, const char *s)
{
    char shown[16];
    size_t len;
    for (; s && *s; s += len) {
        next_char(s, &len, shown);
        fputs(shown, f);
    }
}
