/* cJSON parsing behind one lock. Every cJSON_Parse* call writes cJSON's global error
 * position (cJSON.c: `global_error.json = NULL` on entry, the failure point on exit), even
 * when return_parse_end is given, so two threads loading models at once would race on it.
 * Headers are parsed once per load, so serialising them costs nothing measurable. */
#include "internal.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t json_lock = PTHREAD_MUTEX_INITIALIZER;

cJSON *clipn_json_parse(const char *text, size_t len, const char **end, int require_nul)
{
    pthread_mutex_lock(&json_lock);
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, end, require_nul);
    pthread_mutex_unlock(&json_lock);
    return root;
}

/* ------------------------------------------------------------------ strict parsing */

/* One pass over the text outside strings: nesting depth, an upper bound on the values cJSON
 * would build (every value but a container's first is preceded by a comma, so values <=
 * commas + containers + 1), and the members of the root object. */
typedef struct json_shape {
    int depth;
    size_t values, root_members;
} json_shape;

static void json_scan(const char *s, size_t n, json_shape *out)
{
    int depth = 0, max = 0, in_string = 0, root_nonempty = 0;
    size_t commas = 0, containers = 0, root_commas = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (depth == 1 && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '}')
            root_nonempty = 1;
        if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            containers++;
            if (++depth > max)
                max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            commas++;
            root_commas += depth == 1;
        }
    }
    out->depth = max;
    out->values = commas + containers + 1;
    out->root_members = root_nonempty ? root_commas + 1 : 0;
}

/* RFC 8259 syntax check without allocating: consulted only when cJSON failed, to tell an
 * allocation failure inside cJSON (valid text) from a malformed text. Depth is bounded by
 * the scan before. */
typedef struct json_cursor {
    const char *p, *end;
} json_cursor;

static void skip_ws(json_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(json_cursor *c, char ch)
{
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int digits(json_cursor *c)
{
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > start;
}

static int valid_string(json_cursor *c)
{
    if (!eat(c, '"'))
        return 0;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"')
            return 1;
        if (ch < 0x20)
            return 0;
        if (ch == '\\') {
            if (c->p >= c->end)
                return 0;
            ch = (unsigned char)*c->p++;
            if (ch == 'u') {
                for (int k = 0; k < 4; k++, c->p++)
                    if (c->p >= c->end || !strchr("0123456789abcdefABCDEF", *c->p) || !*c->p)
                        return 0;
            } else if (!strchr("\"\\/bfnrt", ch) || !ch) {
                return 0;
            }
        }
    }
    return 0;
}

static int valid_value(json_cursor *c)
{
    skip_ws(c);
    if (c->p >= c->end)
        return 0;
    const char ch = *c->p;
    if (ch == '"')
        return valid_string(c);
    if (ch == '{' || ch == '[') {
        const char close = ch == '{' ? '}' : ']';
        c->p++;
        skip_ws(c);
        if (eat(c, close))
            return 1;
        do {
            if (ch == '{') {
                skip_ws(c);
                if (!valid_string(c))
                    return 0;
                skip_ws(c);
                if (!eat(c, ':'))
                    return 0;
            }
            if (!valid_value(c))
                return 0;
            skip_ws(c);
        } while (eat(c, ','));
        return eat(c, close);
    }
    static const char *const literals[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(literals[k]);
        if ((size_t)(c->end - c->p) >= n && memcmp(c->p, literals[k], n) == 0) {
            c->p += n;
            return 1;
        }
    }
    eat(c, '-');
    if (!eat(c, '0') && !digits(c))
        return 0;
    if (eat(c, '.') && !digits(c))
        return 0;
    if (eat(c, 'e') || eat(c, 'E')) {
        if (!eat(c, '+'))
            eat(c, '-');
        if (!digits(c))
            return 0;
    }
    return 1;
}

static int json_syntax_ok(const char *text, size_t len)
{
    json_cursor c = {text, text + len};
    if (!valid_value(&c))
        return 0;
    skip_ws(&c);
    return c.p == c.end;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

/* A key that appears twice in one object, anywhere in the tree (cJSON keeps both and its
 * lookups return the first, so a file could mean one thing to us and another to a
 * reader that keeps the last). 1 = found (*dup), 0 = none, -1 = out of memory. */
static int find_duplicate(const cJSON *v, const char **dup)
{
    for (; v; v = v->next) {
        if (cJSON_IsObject(v)) {
            size_t n = 0;
            for (const cJSON *c = v->child; c; c = c->next)
                n++;
            if (n > 1 && n <= 16) {
                for (const cJSON *a = v->child; a; a = a->next)
                    for (const cJSON *b = a->next; b; b = b->next)
                        if (strcmp(a->string, b->string) == 0) {
                            *dup = a->string;
                            return 1;
                        }
            } else if (n > 16) {
                const cJSON **keys = malloc(n * sizeof *keys);
                if (!keys)
                    return -1;
                size_t k = 0;
                for (const cJSON *c = v->child; c; c = c->next)
                    keys[k++] = c;
                qsort(keys, n, sizeof *keys, by_key);
                for (k = 1; k < n; k++)
                    if (strcmp(keys[k - 1]->string, keys[k]->string) == 0) {
                        *dup = keys[k]->string;
                        free(keys);
                        return 1;
                    }
                free(keys);
            }
        }
        if (v->child && (cJSON_IsObject(v) || cJSON_IsArray(v))) {
            int r = find_duplicate(v->child, dup);
            if (r)
                return r;
        }
    }
    return 0;
}

clipn_status clipn_json_parse_strict(const char *text, size_t len, const clipn_json_limits *lim,
                                     const char *what, cJSON **out, clipn_error *err)
{
    *out = NULL;
    if (memchr(text, '\0', len))
        return clipn_fail(err, CLIPN_E_FORMAT, "%s contains a NUL byte", what);
    json_shape sh;
    json_scan(text, len, &sh);
    if (sh.depth > lim->max_depth)
        return clipn_fail(err, CLIPN_E_FORMAT, "%s nests deeper than %d levels", what,
                          lim->max_depth);
    if (lim->max_root_members && sh.root_members > lim->max_root_members)
        return clipn_fail(err, CLIPN_E_LIMIT, "%s has %zu entries (limit %zu)", what,
                          sh.root_members, lim->max_root_members);
    /* cJSON takes ~64 bytes per value: a 10 MB header of one array cost 435 MB before */
    size_t max_values = lim->max_values + lim->values_per_root_member * sh.root_members;
    if (sh.values > max_values)
        return clipn_fail(err, CLIPN_E_LIMIT,
                          "%s holds up to %zu JSON values, more than the %zu its entries allow",
                          what, sh.values, max_values);
    const char *end = NULL;
    cJSON *root = clipn_json_parse(text, len, &end, 0);
    if (!root) {
        /* cJSON does not say whether it ran out of memory: a text that is valid JSON
           failed for want of memory */
        if (json_syntax_ok(text, len))
            return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory parsing JSON", what);
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return clipn_fail(err, CLIPN_E_FORMAT, "%s is not valid JSON (near byte %zu)", what, at);
    }
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return clipn_fail(err, CLIPN_E_FORMAT, "%s is not valid JSON (text after the value at byte %zu)",
                              what, (size_t)(p - text));
        }
    const char *dup = NULL;
    int r = find_duplicate(root, &dup);
    if (r) {
        clipn_status st = r < 0 ? clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", what)
                                : clipn_fail(err, CLIPN_E_FORMAT,
                                             "%s has the key \"%.100s\" twice", what, dup);
        cJSON_Delete(root); /* after the message: dup points into it */
        return st;
    }
    *out = root;
    return CLIPN_OK;
}
