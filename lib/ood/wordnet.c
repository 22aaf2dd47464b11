/* NegLabel's candidate words from a WordNet 3.0 database (wndb(5WN) data files).
 *
 * A data line: "offset lex_filenum ss_type w_cnt word lex_id ...", w_cnt in hex; license
 * lines start with two spaces. Lexicographer file numbers (lexnames(5WN)): 00 adj.all,
 * 01 adj.pert, 44 adj.ppl; 03-28 the noun files, of which NegLabel drops 05 noun.animal
 * and 13 noun.food (its txtfiles/ folder). */
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORDNET_MAX_FILE (64u << 20) /* data.noun is 15 MB */

void clipn_word_lists_free(clipn_word_lists *lists)
{
    if (!lists)
        return;
    for (int i = 0; i < lists->n_nouns; i++)
        free(lists->nouns[i]);
    for (int i = 0; i < lists->n_adjectives; i++)
        free(lists->adjectives[i]);
    free(lists->nouns);
    free(lists->adjectives);
    free(lists);
}

static int noun_file_kept(int lex) { return lex >= 3 && lex <= 28 && lex != 5 && lex != 13; }
static int adj_file_kept(int lex) { return lex == 0 || lex == 1 || lex == 44; }

/* ---- a set of strings (open addressing, FNV-1a) */
typedef struct word_set {
    char **slot;
    size_t cap, n;
} word_set;

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 if s was added, 0 if present, -1 on out of memory. The set does not own s. */
static int set_add(word_set *set, char *s)
{
    if (2 * (set->n + 1) > set->cap) {
        size_t cap = set->cap ? 2 * set->cap : 1024;
        char **slot = calloc(cap, sizeof *slot);
        if (!slot)
            return -1;
        for (size_t i = 0; i < set->cap; i++)
            if (set->slot[i]) {
                size_t j = hash_str(set->slot[i]) & (cap - 1);
                while (slot[j])
                    j = (j + 1) & (cap - 1);
                slot[j] = set->slot[i];
            }
        free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    size_t j = hash_str(s) & (set->cap - 1);
    for (; set->slot[j]; j = (j + 1) & (set->cap - 1))
        if (!strcmp(set->slot[j], s))
            return 0;
    set->slot[j] = s;
    set->n++;
    return 1;
}

typedef struct word_list {
    char **w;
    int n, cap;
} word_list;

static int list_push(word_list *l, char *s)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4096;
        char **w = realloc(l->w, (size_t)cap * sizeof *w);
        if (!w)
            return -1;
        l->w = w;
        l->cap = cap;
    }
    l->w[l->n++] = s;
    return 0;
}

/* Through clipn_read_file: a regular file only (a FIFO named data.noun would block). */
static char *read_whole(const char *path, size_t *len, clipn_error *err, clipn_status *st)
{
    uint8_t *buf = NULL;
    clipn_error e;
    *st = clipn_read_file(path, WORDNET_MAX_FILE, &buf, len, &e);
    if (*st == CLIPN_E_IO)
        clipn_fail(err, *st, "%s (Debian: apt-get install wordnet-base)", e.message);
    else if (*st != CLIPN_OK)
        clipn_fail(err, *st, "%s", e.message);
    return (char *)buf;
}

/* "able" stays, "Abies_(a)" -> "abies": lower-case, '_' -> ' ', an adjective marker
 * "(a)", "(p)" or "(ip)" at the end removed. In place. */
static void clean_word(char *w)
{
    static const char *const markers[] = {"(a)", "(p)", "(ip)"};
    size_t n = strlen(w);
    for (int i = 0; i < 3; i++) {
        size_t m = strlen(markers[i]);
        if (n > m && !strcmp(w + n - m, markers[i])) {
            w[n - m] = '\0';
            break;
        }
    }
    for (char *p = w; *p; p++)
        *p = *p == '_' ? ' ' : (char)tolower((unsigned char)*p);
}

/* The first lemma of each kept synset of one data file, in file order, into `out`
 * (skipping words already in `seen`, which takes the new ones). */
static clipn_status read_data_file(const char *dir, const char *name, int (*kept)(int),
                                   word_set *seen, word_list *out, clipn_error *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "WordNet: directory name too long");
    size_t len = 0;
    clipn_status st = CLIPN_OK;
    char *buf = read_whole(path, &len, err, &st);
    if (!buf)
        return st;
    int line_no = 0;
    for (char *line = buf; line < buf + len && st == CLIPN_OK; line_no++) {
        char *end = memchr(line, '\n', (size_t)(buf + len - line));
        if (!end)
            end = buf + len;
        *end = '\0';
        char *cur = line;
        line = end + 1;
        if (cur[0] == ' ' || cur[0] == '\0') /* license header, blank line */
            continue;
        unsigned long offset;
        int lex, consumed = 0;
        char ss_type;
        unsigned w_cnt;
        if (sscanf(cur, "%lu %d %c %x %n", &offset, &lex, &ss_type, &w_cnt, &consumed) != 4 ||
            consumed == 0 || w_cnt == 0 || cur[consumed] == '\0' || cur[consumed] == ' ') {
            st = clipn_fail(err, CLIPN_E_FORMAT, "%s:%d: not a WordNet data line", path,
                            line_no + 1);
            break;
        }
        if (!kept(lex))
            continue;
        const char *w = cur + consumed;
        const size_t wl = strcspn(w, " ");
        char *word = strndup(w, wl);
        if (!word) {
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
            break;
        }
        clean_word(word);
        int added = word[0] ? set_add(seen, word) : 0;
        if (added == 1 && list_push(out, word) == 0)
            continue;
        free(word);
        if (added != 0)
            st = clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    }
    free(buf);
    return st;
}

clipn_status clipn_wordnet_read(const char *dir, clipn_word_lists **out, clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_wordnet_read: out is NULL");
    *out = NULL;
    if (!dir)
        dir = CLIPN_WORDNET_DEFAULT_DIR;
    word_set seen = {0};
    word_list nouns = {0}, adjs = {0};
    clipn_status st = read_data_file(dir, "data.noun", noun_file_kept, &seen, &nouns, err);
    if (st == CLIPN_OK)
        st = read_data_file(dir, "data.adj", adj_file_kept, &seen, &adjs, err);
    free(seen.slot);
    clipn_word_lists *l = st == CLIPN_OK ? calloc(1, sizeof *l) : NULL;
    if (st == CLIPN_OK && !l)
        st = clipn_fail(err, CLIPN_E_NOMEM, "WordNet: out of memory");
    if (st == CLIPN_OK && (nouns.n == 0 || adjs.n == 0))
        st = clipn_fail(err, CLIPN_E_FORMAT, "%s: no nouns or no adjectives found", dir);
    if (st != CLIPN_OK) {
        for (int i = 0; i < nouns.n; i++)
            free(nouns.w[i]);
        for (int i = 0; i < adjs.n; i++)
            free(adjs.w[i]);
        free(nouns.w);
        free(adjs.w);
        free(l);
        return st;
    }
    l->nouns = nouns.w;
    l->n_nouns = nouns.n;
    l->adjectives = adjs.w;
    l->n_adjectives = adjs.n;
    *out = l;
    return CLIPN_OK;
}
