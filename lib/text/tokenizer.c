/* The CLIP byte-level BPE tokenizer (open_clip's SimpleTokenizer), giving the same ids.
 *
 * Vocabulary, in id order: the 256 byte symbols (GPT-2 bytes_to_unicode order), the same
 * with "</w>", one entry per merge (the two halves joined), <start_of_text>, <end_of_text>.
 * The official code looks strings up in dicts, where a repeated key keeps its LAST id or
 * rank; here every symbol is its string's final id, so repeats behave the same.
 *
 * Encoding: tok_clean_text (lib/text/clean.c) -> split with the official regex -> each
 * piece's UTF-8 bytes become byte symbols, the last one with "</w>" -> merge the
 * lowest-ranked adjacent pair everywhere it occurs, until no pair has a rank.
 */
#include "internal.h"
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define TOK_MAX_MERGES CLIPN_TOK_MAX_MERGES
#define TOK_MAX_FILE_BYTES (64u << 20)
#define TOK_CACHE_SLOTS 8192             /* power of two */
#define TOK_CACHE_MAX_ENTRIES 4096       /* then the cache is emptied */
#define TOK_CACHE_MAX_IDS (1u << 18)
#define TOK_CACHE_MAX_KEY 64             /* longer pieces are not cached */

typedef struct cache_slot {
    uint64_t hash;   /* 0 = empty */
    uint32_t key_off, key_len;
    uint32_t ids_off, ids_len;
} cache_slot;

typedef struct heap_entry {
    uint32_t rank, pos;
} heap_entry;

struct clipn_tokenizer {
    int n_merges;
    int32_t sot_id, eot_id;
    int32_t byte_id[256];          /* byte -> its symbol's id */
    int32_t byte_end_id[256];      /* byte -> its "</w>" symbol's id (end of a piece) */

    /* (left id, right id) -> rank and merged id; open addressing */
    uint64_t *pair_key;            /* (left << 32 | right) + 1; 0 = empty */
    uint32_t *pair_rank;
    int32_t *pair_merged;
    size_t pair_mask;

    /* cache of merged pieces: bytes -> ids */
    cache_slot *cache;
    int cache_entries;
    unsigned char *cache_keys;
    size_t cache_keys_len;
    int32_t *cache_ids;
    size_t cache_ids_len;

    /* scratch, grown as needed */
    tok_buf text;
    unsigned char *piece;
    size_t piece_cap;
    int32_t *sym, *next, *prev;
    heap_entry *heap, *pending;
    size_t word_cap;
};

/* ------------------------------------------------------------------ helpers */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const unsigned char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h | 1; /* never 0: 0 marks an empty slot */
}

/* GPT-2's bytes_to_unicode: byte_order[i] is the byte of vocab entry i, and its
 * character is the byte itself for printable Latin-1, else 256 + n. */
static void bytes_to_unicode(uint8_t byte_order[256], uint32_t chars[256])
{
    int n = 0, k = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
            byte_order[k] = (uint8_t)b;
            chars[k++] = (uint32_t)b;
        }
    for (int b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            byte_order[k] = (uint8_t)b;
            chars[k++] = 256u + (uint32_t)n++;
        }
}

static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ building */

/* The vocabulary strings, only while building: string -> id map (last id wins). */
typedef struct vocab_build {
    char *arena;
    size_t arena_len, arena_cap;
    size_t *off, *len;             /* per id */
    int n;
    int32_t *slot;                 /* -1 = empty */
    size_t mask;
} vocab_build;

static int32_t vocab_find(const vocab_build *v, const char *s, size_t n)
{
    for (size_t i = hash_bytes((const unsigned char *)s, n) & v->mask;; i = (i + 1) & v->mask) {
        int32_t id = v->slot[i];
        if (id < 0)
            return -1;
        if (v->len[id] == n && !memcmp(v->arena + v->off[id], s, n))
            return id;
    }
}

/* Append the string of the next id; a repeated string now maps to this id. */
static int vocab_add(vocab_build *v, const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na + nb;
    if (v->arena_len + n > v->arena_cap)
        return -1; /* sized up front; cannot happen */
    memcpy(v->arena + v->arena_len, a, na);
    memcpy(v->arena + v->arena_len + na, b, nb);
    int32_t id = v->n++;
    v->off[id] = v->arena_len;
    v->len[id] = n;
    const char *s = v->arena + v->arena_len;
    v->arena_len += n;
    for (size_t i = hash_bytes((const unsigned char *)s, n) & v->mask;; i = (i + 1) & v->mask) {
        int32_t old = v->slot[i];
        if (old < 0 || (v->len[old] == n && !memcmp(v->arena + v->off[old], s, n))) {
            v->slot[i] = id;
            return 0;
        }
    }
}

static size_t pair_find(const clipn_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (size_t i = mix64(key) & t->pair_mask;; i = (i + 1) & t->pair_mask)
        if (t->pair_key[i] == key || t->pair_key[i] == 0)
            return i;
}

typedef struct merge_line {
    const char *a, *b;
    size_t na, nb;
} merge_line;

static int is_ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Split `text` into at most TOK_MAX_MERGES lines of two fields. */
static clipn_status parse_merges(const char *text, size_t len, merge_line **out, int *count,
                                 clipn_error *err)
{
    size_t lines = 0;
    for (size_t i = 0; i < len && lines < TOK_MAX_MERGES; i++)
        if (text[i] == '\n')
            lines++;
    if (lines < TOK_MAX_MERGES && len > 0 && text[len - 1] != '\n')
        lines++;
    if (lines == 0)
        return clipn_fail(err, CLIPN_E_FORMAT, "BPE merges: no merge lines");
    merge_line *m = calloc(lines, sizeof *m);
    if (!m)
        return clipn_fail(err, CLIPN_E_NOMEM, "BPE merges: out of memory");
    size_t pos = 0;
    int n = 0;
    while (pos < len && (size_t)n < lines) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        const char *f[3];
        size_t fl[3];
        int nf = 0;
        for (size_t i = pos; i < end;) {
            while (i < end && is_ascii_space(text[i]))
                i++;
            if (i == end)
                break;
            size_t s = i;
            while (i < end && !is_ascii_space(text[i]))
                i++;
            if (nf < 3) {
                f[nf] = text + s;
                fl[nf] = i - s;
            }
            nf++;
        }
        if (nf != 2) {
            free(m);
            return clipn_fail(err, CLIPN_E_FORMAT,
                              "BPE merges: line %d has %d fields, expected 2", n + 1, nf);
        }
        m[n].a = f[0];
        m[n].na = fl[0];
        m[n].b = f[1];
        m[n].nb = fl[1];
        n++;
        pos = end + 1;
    }
    *out = m;
    *count = n;
    return CLIPN_OK;
}

clipn_status clipn_tokenizer_from_merges(const char *merges, size_t len, clipn_tokenizer **out,
                                         clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_merges: out is NULL");
    *out = NULL;
    if (!merges && len)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_merges: merges is NULL");
    if (len > TOK_MAX_FILE_BYTES)
        return clipn_fail(err, CLIPN_E_LIMIT, "BPE merges: %zu bytes, more than the %u allowed",
                          len, TOK_MAX_FILE_BYTES);
    merge_line *lines = NULL;
    int n_merges = 0;
    clipn_status st = parse_merges(merges, len, &lines, &n_merges, err);
    if (st)
        return st;

    clipn_tokenizer *t = calloc(1, sizeof *t);
    vocab_build v = {0};
    int n_vocab = 512 + n_merges + 2;
    size_t cap = 1;
    while (cap < 2 * (size_t)n_vocab)
        cap *= 2;
    v.arena_cap = 512 * 8 + len + 64; /* each merge adds at most its line's bytes */
    v.arena = malloc(v.arena_cap);
    v.off = malloc((size_t)n_vocab * sizeof *v.off);
    v.len = malloc((size_t)n_vocab * sizeof *v.len);
    v.slot = malloc(cap * sizeof *v.slot);
    v.mask = cap - 1;
    size_t pcap = 1;
    while (pcap < 2 * (size_t)n_merges)
        pcap *= 2;
    if (t) {
        t->pair_key = calloc(pcap, sizeof *t->pair_key);
        t->pair_rank = malloc(pcap * sizeof *t->pair_rank);
        t->pair_merged = malloc(pcap * sizeof *t->pair_merged);
        t->pair_mask = pcap - 1;
        t->cache = calloc(TOK_CACHE_SLOTS, sizeof *t->cache);
        t->cache_keys = malloc((size_t)TOK_CACHE_MAX_ENTRIES * TOK_CACHE_MAX_KEY);
        t->cache_ids = malloc(TOK_CACHE_MAX_IDS * sizeof *t->cache_ids);
    }
    if (!t || !v.arena || !v.off || !v.len || !v.slot || !t->pair_key || !t->pair_rank ||
        !t->pair_merged || !t->cache || !t->cache_keys || !t->cache_ids) {
        st = clipn_fail(err, CLIPN_E_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    memset(v.slot, 0xff, cap * sizeof *v.slot);

    uint8_t order[256];
    uint32_t chars[256];
    bytes_to_unicode(order, chars);
    int bad = 0;
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 256; i++) {
            char u[4];
            size_t nu = put_utf8(chars[i], u);
            bad |= vocab_add(&v, u, nu, "</w>", w ? 4 : 0);
            if (w)
                t->byte_end_id[order[i]] = 256 + i;
            else
                t->byte_id[order[i]] = i;
        }
    for (int r = 0; r < n_merges; r++)
        bad |= vocab_add(&v, lines[r].a, lines[r].na, lines[r].b, lines[r].nb);
    bad |= vocab_add(&v, "<start_of_text>", 15, "", 0);
    bad |= vocab_add(&v, "<end_of_text>", 13, "", 0);
    if (bad) {
        st = clipn_fail(err, CLIPN_E_INTERNAL, "tokenizer: vocabulary arena too small");
        goto done;
    }
    t->sot_id = vocab_find(&v, "<start_of_text>", 15);
    t->eot_id = vocab_find(&v, "<end_of_text>", 13);
    /* canonical ids of the byte symbols (a merge could repeat one's string) */
    for (int b = 0; b < 256; b++) {
        int32_t id = t->byte_id[b], end = t->byte_end_id[b];
        t->byte_id[b] = vocab_find(&v, v.arena + v.off[id], v.len[id]);
        t->byte_end_id[b] = vocab_find(&v, v.arena + v.off[end], v.len[end]);
    }
    t->n_merges = n_merges;
    for (int r = 0; r < n_merges; r++) {
        int32_t a = vocab_find(&v, lines[r].a, lines[r].na);
        int32_t b = vocab_find(&v, lines[r].b, lines[r].nb);
        if (a < 0 || b < 0)
            continue; /* a half that is no symbol can never be adjacent in a word */
        int32_t merged = vocab_find(&v, v.arena + v.off[512 + r], v.len[512 + r]);
        size_t s = pair_find(t, a, b);
        t->pair_key[s] = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        t->pair_rank[s] = (uint32_t)r; /* a repeated pair keeps its last rank, as dict() */
        t->pair_merged[s] = merged;
    }
    st = CLIPN_OK;
done:
    free(lines);
    free(v.arena);
    free(v.off);
    free(v.len);
    free(v.slot);
    if (st) {
        clipn_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CLIPN_OK;
}

clipn_status clipn_tokenizer_from_model(const clipn_model *model, clipn_tokenizer **out,
                                        clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_model: out is NULL");
    *out = NULL;
    if (!model)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_model: model is NULL");
    if (!model->bpe_merges || model->bpe_merges_len == 0)
        return clipn_fail(err, CLIPN_E_FORMAT, "model has no tokenizer.bpe_merges");
    return clipn_tokenizer_from_merges(model->bpe_merges, model->bpe_merges_len, out, err);
}

/* The official vocab file (plain or gzip; zlib reads both): a header line, then merges. */
clipn_status clipn_tokenizer_from_file(const char *path, clipn_tokenizer **out, clipn_error *err)
{
    if (!out)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_file: out is NULL");
    *out = NULL;
    if (!path)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenizer_from_file: path is NULL");
    int fd;
    uint64_t fsize;
    clipn_status ost = clipn_open_input(path, TOK_MAX_FILE_BYTES, &fd, &fsize, NULL, err);
    if (ost != CLIPN_OK)
        return ost;
    gzFile f = gzdopen(fd, "rb"); /* takes the descriptor */
    if (!f) {
        close(fd);
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    clipn_status st = CLIPN_OK;
    while (buf) {
        if (len == cap) {
            if (cap >= TOK_MAX_FILE_BYTES) {
                st = clipn_fail(err, CLIPN_E_LIMIT, "%s: more than %u bytes", path,
                                TOK_MAX_FILE_BYTES);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        int r = gzread(f, buf + len, (unsigned)(cap - len));
        if (r < 0) {
            int zerr = Z_OK;
            gzerror(f, &zerr);
            st = zerr == Z_MEM_ERROR
                     ? clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory decompressing", path)
                     : clipn_fail(err, CLIPN_E_IO, "%s: read error (corrupt gzip?)", path);
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    gzclose(f);
    if (!buf)
        return clipn_fail(err, CLIPN_E_NOMEM, "%s: out of memory", path);
    if (st == CLIPN_OK) {
        const char *nl = memchr(buf, '\n', len);
        if (!nl)
            st = clipn_fail(err, CLIPN_E_FORMAT, "%s: no merges after the header line", path);
        else
            st = clipn_tokenizer_from_merges(nl + 1, len - (size_t)(nl + 1 - buf), out, err);
    }
    free(buf);
    return st;
}

void clipn_tokenizer_free(clipn_tokenizer *t)
{
    if (!t)
        return;
    free(t->pair_key);
    free(t->pair_rank);
    free(t->pair_merged);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    tok_buf_free(&t->text);
    free(t->piece);
    free(t->sym);
    free(t->next);
    free(t->prev);
    free(t->heap);
    free(t->pending);
    free(t);
}

/* ------------------------------------------------------------------ BPE */

static int rank_of(const clipn_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *merged)
{
    size_t s = pair_find(t, a, b);
    if (!t->pair_key[s])
        return 0;
    *rank = t->pair_rank[s];
    if (merged)
        *merged = t->pair_merged[s];
    return 1;
}

static int heap_less(heap_entry x, heap_entry y)
{
    return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos);
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e)
{
    size_t i = (*n)++;
    while (i > 0 && heap_less(e, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static heap_entry heap_pop(heap_entry *h, size_t *n)
{
    heap_entry top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c]))
            c++;
        if (!heap_less(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static int word_reserve(clipn_tokenizer *t, size_t n)
{
    if (n <= t->word_cap)
        return 0;
    if (n > SIZE_MAX / (3 * sizeof(heap_entry)) || n > INT32_MAX)
        return -1;
    int32_t *sym = realloc(t->sym, n * sizeof *sym);
    if (sym)
        t->sym = sym;
    int32_t *next = realloc(t->next, n * sizeof *next);
    if (next)
        t->next = next;
    int32_t *prev = realloc(t->prev, n * sizeof *prev);
    if (prev)
        t->prev = prev;
    heap_entry *heap = realloc(t->heap, 3 * n * sizeof *heap);
    if (heap)
        t->heap = heap;
    heap_entry *pending = realloc(t->pending, 2 * n * sizeof *pending);
    if (pending)
        t->pending = pending;
    if (!sym || !next || !prev || !heap || !pending)
        return -1;
    t->word_cap = n;
    return 0;
}

/* Merge the symbols of one piece (bytes s[0..n)), writing its ids to t->sym in order.
 * Returns the number of ids, or -1 when out of memory.
 *
 * Same result as the official loop (take the lowest-ranked pair present, merge all its
 * occurrences left to right, repeat): pairs wait in a heap ordered by (rank, position);
 * all entries of one rank are merged as one round, and the pairs a round creates join
 * the heap only after it, so a round never sees its own results. Entries whose pair has
 * since changed are skipped. O(n log n) instead of O(n^2) for long pieces. */
static long bpe_word(clipn_tokenizer *t, const unsigned char *s, size_t n)
{
    if (word_reserve(t, n))
        return -1;
    int32_t *sym = t->sym, *next = t->next, *prev = t->prev;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_id[s[i]];
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    sym[n - 1] = t->byte_end_id[s[n - 1]];
    size_t nh = 0, np = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r;
        if (rank_of(t, sym[i], sym[i + 1], &r, NULL))
            heap_push(t->heap, &nh, (heap_entry){r, (uint32_t)i});
    }
    while (nh) {
        uint32_t round = t->heap[0].rank;
        np = 0;
        while (nh && t->heap[0].rank == round) {
            heap_entry e = heap_pop(t->heap, &nh);
            int32_t i = (int32_t)e.pos, j = next[i];
            uint32_t r;
            int32_t merged;
            if (sym[i] < 0 || j < 0 || !rank_of(t, sym[i], sym[j], &r, &merged) || r != round)
                continue;
            sym[i] = merged;
            sym[j] = -1;
            next[i] = next[j];
            if (next[j] >= 0)
                prev[next[j]] = i;
            if (prev[i] >= 0 && rank_of(t, sym[prev[i]], sym[i], &r, NULL))
                t->pending[np++] = (heap_entry){r, (uint32_t)prev[i]};
            if (next[i] >= 0 && rank_of(t, sym[i], sym[next[i]], &r, NULL))
                t->pending[np++] = (heap_entry){r, (uint32_t)i};
        }
        for (size_t k = 0; k < np; k++)
            heap_push(t->heap, &nh, t->pending[k]);
    }
    long m = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        sym[m++] = sym[i];
    return m;
}

/* ------------------------------------------------------------------ cache */

static void cache_clear(clipn_tokenizer *t)
{
    memset(t->cache, 0, TOK_CACHE_SLOTS * sizeof *t->cache);
    t->cache_entries = 0;
    t->cache_keys_len = 0;
    t->cache_ids_len = 0;
}

static cache_slot *cache_find(clipn_tokenizer *t, const unsigned char *s, size_t n, uint64_t h)
{
    for (size_t i = h & (TOK_CACHE_SLOTS - 1);; i = (i + 1) & (TOK_CACHE_SLOTS - 1)) {
        cache_slot *c = &t->cache[i];
        if (c->hash == 0 ||
            (c->hash == h && c->key_len == n && !memcmp(t->cache_keys + c->key_off, s, n)))
            return c;
    }
}

static void cache_put(clipn_tokenizer *t, const unsigned char *s, size_t n, uint64_t h,
                      const int32_t *ids, size_t m)
{
    if (t->cache_entries >= TOK_CACHE_MAX_ENTRIES || t->cache_ids_len + m > TOK_CACHE_MAX_IDS)
        cache_clear(t);
    if (m > TOK_CACHE_MAX_IDS)
        return;
    cache_slot *c = cache_find(t, s, n, h);
    memcpy(t->cache_keys + t->cache_keys_len, s, n);
    memcpy(t->cache_ids + t->cache_ids_len, ids, m * sizeof *ids);
    *c = (cache_slot){h, (uint32_t)t->cache_keys_len, (uint32_t)n, (uint32_t)t->cache_ids_len,
                      (uint32_t)m};
    t->cache_keys_len += n;
    t->cache_ids_len += m;
    t->cache_entries++;
}

/* ------------------------------------------------------------------ split + encode */

/* Case-insensitive match of an ASCII pattern: the only lowercase letter folding to one of
 * the patterns' letters is U+017F LONG S (to 's'). */
static int ci_eq(uint32_t c, char p)
{
    return c == (uint32_t)p || (p == 's' && c == 0x17F);
}

static size_t match_literal(const uint32_t *s, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (k >= n || !ci_eq(s[k], lit[k]))
            return 0;
    return k;
}

/* U+0345 COMBINING GREEK YPOGEGRAMMENI (Mn) case-folds to a letter (iota), so under
 * IGNORECASE `regex` lets neither [\p{L}] nor [^\s\p{L}\p{N}] match it: it is skipped like
 * a space. A brute-force check over all code points found no other such character. */
#define YPOGEGRAMMENI 0x345

/* Length of the regex match at s[0] (0 = no match here):
 * <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ */
static size_t match_piece(const uint32_t *s, size_t n)
{
    static const char *const specials[] = {"<start_of_text>", "<end_of_text>"};
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t k;
    if (s[0] == '<')
        for (int i = 0; i < 2; i++)
            if ((k = match_literal(s, n, specials[i])))
                return k;
    if (s[0] == '\'')
        for (int i = 0; i < 7; i++)
            if ((k = match_literal(s, n, contractions[i])))
                return k;
    if (tok_is_letter(s[0])) {
        for (k = 1; k < n && tok_is_letter(s[k]); k++)
            ;
        return k;
    }
    if (tok_is_number(s[0]))
        return 1;
    if (tok_is_regex_space(s[0]) || s[0] == YPOGEGRAMMENI)
        return 0;
    for (k = 1; k < n && !tok_is_letter(s[k]) && !tok_is_number(s[k]) &&
                !tok_is_regex_space(s[k]) && s[k] != YPOGEGRAMMENI;
         k++)
        ;
    return k;
}

/* Encode one piece's tokens into ids[*count..max). Returns -1 when out of memory. */
static int encode_piece(clipn_tokenizer *t, const uint32_t *cps, size_t n, int32_t *ids,
                        size_t *count, size_t max)
{
    if (n > (SIZE_MAX - 1) / 4)
        return -1;
    if (4 * n > t->piece_cap) {
        unsigned char *p = realloc(t->piece, 4 * n);
        if (!p)
            return -1;
        t->piece = p;
        t->piece_cap = 4 * n;
    }
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        nb += put_utf8(cps[i], (char *)t->piece + nb);
    const unsigned char *s = t->piece;
    /* the official cache starts with the two special tokens */
    if (nb == 15 && !memcmp(s, "<start_of_text>", 15)) {
        ids[(*count)++] = t->sot_id;
        return 0;
    }
    if (nb == 13 && !memcmp(s, "<end_of_text>", 13)) {
        ids[(*count)++] = t->eot_id;
        return 0;
    }
    uint64_t h = 0;
    if (nb <= TOK_CACHE_MAX_KEY) {
        h = hash_bytes(s, nb);
        cache_slot *c = cache_find(t, s, nb, h);
        if (c->hash) {
            for (uint32_t k = 0; k < c->ids_len && *count < max; k++)
                ids[(*count)++] = t->cache_ids[c->ids_off + k];
            return 0;
        }
    }
    long m = bpe_word(t, s, nb);
    if (m < 0)
        return -1;
    if (nb <= TOK_CACHE_MAX_KEY)
        cache_put(t, s, nb, h, t->sym, (size_t)m);
    for (long k = 0; k < m && *count < max; k++)
        ids[(*count)++] = t->sym[k];
    return 0;
}

clipn_status clipn_tokenize(clipn_tokenizer *t, const char *text, size_t len, int32_t *ids,
                            int context_length, clipn_error *err)
{
    if (!t || !ids || (!text && len))
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenize: NULL argument");
    if (context_length < 1)
        return clipn_fail(err, CLIPN_E_INVALID_ARG, "clipn_tokenize: context_length %d < 1",
                          context_length);
    if (len > CLIPN_DEFAULT_MAX_TEXT_BYTES)
        return clipn_fail(err, CLIPN_E_LIMIT, "clipn_tokenize: text of %zu bytes exceeds the "
                          "limit of %u bytes", len, CLIPN_DEFAULT_MAX_TEXT_BYTES);
    memset(ids, 0, (size_t)context_length * sizeof *ids);
    if (context_length == 1) { /* [sot, ..., eot][:1] with the last set to eot */
        ids[0] = t->eot_id;
        return CLIPN_OK;
    }
    if (tok_clean_text(text ? text : "", len, &t->text))
        return clipn_fail(err, CLIPN_E_NOMEM, "clipn_tokenize: out of memory");
    /* tokens after the first context_length - 2 are cut anyway: stop there */
    size_t max = (size_t)context_length - 2, count = 0;
    const uint32_t *s = t->text.v;
    size_t n = t->text.n;
    for (size_t i = 0; i < n && count < max;) {
        size_t k = match_piece(s + i, n - i);
        if (k == 0) {
            i++;
            continue;
        }
        if (encode_piece(t, s + i, k, ids + 1, &count, max))
            return clipn_fail(err, CLIPN_E_NOMEM, "clipn_tokenize: out of memory");
        i += k;
    }
    /* free scratch that a huge text grew, so an idle tokenizer stays small */
    if (t->text.cap > (1u << 16))
        tok_buf_free(&t->text);
    if (t->word_cap > 4096) {
        free(t->sym);
        free(t->next);
        free(t->prev);
        free(t->heap);
        free(t->pending);
        free(t->piece);
        t->sym = t->next = t->prev = NULL;
        t->heap = t->pending = NULL;
        t->piece = NULL;
        t->word_cap = t->piece_cap = 0;
    }
    ids[0] = t->sot_id;
    ids[count + 1] = t->eot_id;
    return CLIPN_OK;
}
