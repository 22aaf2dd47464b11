/* Tokenizer: ids identical to the official SimpleTokenizer on the committed corpus
 * (tests/fixtures/tokenizer/corpus.jsonl, made by tests/tokenizer_ref/make_reference.py),
 * the documented mojibake behaviour, limits, hostile input and the vocab sources. */
#include "testutil.h"
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define VOCAB "weights_tools/bpe_simple_vocab_16e6.txt.gz"
#define CTX 77

static clipn_tokenizer *open_vocab(void)
{
    clipn_tokenizer *tok = NULL;
    clipn_error err;
    clipn_status st = clipn_tokenizer_from_file(VOCAB, &tok, &err);
    ck_assert_msg(st == CLIPN_OK, "%s", err.message);
    return tok;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static size_t unhex(const char *hex, char *out)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        sscanf(hex, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

/* ids must equal `expect` (up to <end_of_text>) followed by zeros. Returns 1 if equal. */
static int same_ids(const int32_t *ids, const cJSON *expect)
{
    int n = cJSON_GetArraySize(expect);
    for (int i = 0; i < CTX; i++) {
        int want = i < n ? cJSON_GetArrayItem(expect, i)->valueint : 0;
        if (ids[i] != want)
            return 0;
    }
    return 1;
}

/* Compare every text of a .jsonl fixture with the reference under `key`. */
static void check_fixture(const char *path, const char *key, int *texts, int *mismatches)
{
    clipn_tokenizer *tok = open_vocab();
    size_t len;
    char *all = read_all(path, &len);
    *texts = *mismatches = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        ck_assert(row != NULL);
        const char *hex = cJSON_GetObjectItem(row, "hex")->valuestring;
        char *text = malloc(strlen(hex) / 2 + 1);
        size_t n = unhex(hex, text);
        int32_t ids[CTX];
        clipn_error err;
        ck_assert_msg(clipn_tokenize(tok, text, n, ids, CTX, &err) == CLIPN_OK, "%s",
                      err.message);
        (*texts)++;
        if (!same_ids(ids, cJSON_GetObjectItem(row, key))) {
            if (++*mismatches <= 10) {
                fprintf(stderr, "mismatch: %s\n  got ", hex);
                for (int i = 0; i < CTX && (i == 0 || ids[i - 1] != 49407); i++)
                    fprintf(stderr, "%d ", ids[i]);
                char *want = cJSON_PrintUnformatted(cJSON_GetObjectItem(row, key));
                fprintf(stderr, "\n want %s\n", want);
                free(want);
            }
        }
        free(text);
        cJSON_Delete(row);
    }
    free(all);
    clipn_tokenizer_free(tok);
}

START_TEST(test_corpus_matches_official)
{
    int texts, mismatches;
    check_fixture(FIXTURE("tokenizer/corpus.jsonl"), "ids", &texts, &mismatches);
    fprintf(stderr, "tokenizer corpus: %d texts, %d mismatches\n", texts, mismatches);
    ck_assert_int_ge(texts, 2000);
    ck_assert_int_eq(mismatches, 0);
}
END_TEST

/* libclipn does not repair mojibake: these texts get the ids the official tokenizer
 * gives with ftfy's fix_encoding switched off (docs/tokenizer.md). */
START_TEST(test_mojibake_not_repaired)
{
    int texts, mismatches;
    check_fixture(FIXTURE("tokenizer/mojibake.jsonl"), "ids_no_fix_encoding", &texts,
                  &mismatches);
    fprintf(stderr, "tokenizer mojibake: %d texts, %d mismatches\n", texts, mismatches);
    ck_assert_int_ge(texts, 4);
    ck_assert_int_eq(mismatches, 0);
}
END_TEST

static void tokenize_ok(clipn_tokenizer *tok, const char *s, int32_t *ids)
{
    clipn_error err;
    ck_assert_msg(clipn_tokenize(tok, s, strlen(s), ids, CTX, &err) == CLIPN_OK, "%s",
                  err.message);
}

START_TEST(test_known_ids)
{
    clipn_tokenizer *tok = open_vocab();
    int32_t ids[CTX];
    tokenize_ok(tok, "a photo of a cat.", ids);
    const int32_t want[] = {49406, 320, 1125, 539, 320, 2368, 269, 49407, 0};
    for (int i = 0; i < 9; i++)
        ck_assert_int_eq(ids[i], want[i]);
    tokenize_ok(tok, "", ids);
    ck_assert_int_eq(ids[0], 49406);
    ck_assert_int_eq(ids[1], 49407);
    ck_assert_int_eq(ids[2], 0);
    clipn_tokenizer_free(tok);
}
END_TEST

START_TEST(test_truncation_and_context_lengths)
{
    clipn_tokenizer *tok = open_vocab();
    clipn_error err;
    const char *s = "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat "
                    "cat cat cat cat cat cat cat cat cat cat cat cat";
    int32_t ids[CTX];
    for (int ctx = 1; ctx <= 40; ctx++) {
        ck_assert_int_eq(clipn_tokenize(tok, s, strlen(s), ids, ctx, &err), CLIPN_OK);
        ck_assert_int_eq(ids[ctx - 1], ctx <= 32 ? 49407 : 0);
        if (ctx >= 2)
            ck_assert_int_eq(ids[0], 49406);
        for (int i = 1; i < ctx - 1 && i <= 30; i++)
            ck_assert_int_eq(ids[i], 2368);
    }
    ck_assert_int_eq(clipn_tokenize(tok, s, strlen(s), ids, 0, &err), CLIPN_E_INVALID_ARG);
    clipn_tokenizer_free(tok);
}
END_TEST

START_TEST(test_limits_and_hostile_input)
{
    clipn_tokenizer *tok = open_vocab();
    clipn_error err;
    int32_t ids[CTX];
    size_t big = CLIPN_DEFAULT_MAX_TEXT_BYTES;
    char *s = malloc(big + 1);
    ck_assert(s != NULL);
    /* one giant letter run: a single piece of 1 MiB, merged in O(n log n) */
    memset(s, 'a', big);
    ck_assert_int_eq(clipn_tokenize(tok, s, big, ids, CTX, &err), CLIPN_OK);
    ck_assert_int_eq(ids[76], 49407);
    ck_assert_int_eq(clipn_tokenize(tok, s, big + 1, ids, CTX, &err), CLIPN_E_LIMIT);
    ck_assert_int_eq(err.code, CLIPN_E_LIMIT);
    /* every byte value, repeated: invalid UTF-8 never fails */
    for (size_t i = 0; i < big; i++)
        s[i] = (char)(i * 7 + (i >> 8));
    ck_assert_int_eq(clipn_tokenize(tok, s, big, ids, CTX, &err), CLIPN_OK);
    /* nested entities and many lines */
    for (size_t i = 0; i + 5 <= big; i += 5)
        memcpy(s + i, i % 50 ? "&amp;" : "&#x\n", i % 50 ? 5 : 4);
    ck_assert_int_eq(clipn_tokenize(tok, s, big - 8, ids, CTX, &err), CLIPN_OK);
    /* a megabyte of alternating combining marks (classes 230, 220): NFC's reordering
       must not be quadratic */
    for (size_t i = 0; i + 4 <= big; i += 4)
        memcpy(s + i, "\xcc\x81\xcc\x96", 4);
    ck_assert_int_eq(clipn_tokenize(tok, s, big, ids, CTX, &err), CLIPN_OK);
    /* a megabyte of distinct words: the cache stays bounded */
    for (size_t i = 0; i + 8 <= big; i += 8)
        snprintf(s + i, 9, "%07zx ", i);
    ck_assert_int_eq(clipn_tokenize(tok, s, big - 8, ids, CTX, &err), CLIPN_OK);
    free(s);
    ck_assert_int_eq(clipn_tokenize(tok, NULL, 0, ids, CTX, &err), CLIPN_OK);
    ck_assert_int_eq(clipn_tokenize(NULL, "x", 1, ids, CTX, &err), CLIPN_E_INVALID_ARG);
    clipn_tokenizer_free(tok);
}
END_TEST

START_TEST(test_sources_agree)
{
    /* the merges as a model file embeds them (no header line) give the same tokenizer */
    gzFile f = gzopen(VOCAB, "rb");
    ck_assert(f != NULL);
    size_t cap = 8u << 20, len = 0;
    char *buf = malloc(cap);
    int r;
    while ((r = gzread(f, buf + len, (unsigned)(cap - len))) > 0)
        len += (size_t)r;
    gzclose(f);
    char *start = memchr(buf, '\n', len) + 1, *end = start;
    for (int lines = 0; lines < 48894; lines++)
        end = memchr(end, '\n', len - (size_t)(end - buf)) + 1;
    clipn_tokenizer *a = open_vocab(), *b = NULL;
    clipn_error err;
    ck_assert_int_eq(clipn_tokenizer_from_merges(start, (size_t)(end - start), &b, &err), CLIPN_OK);
    const char *texts[] = {"a photo of a goldfish, carassius auratus.", "Ünïcödé &amp; ﬁne"};
    for (int i = 0; i < 2; i++) {
        int32_t x[CTX], y[CTX];
        tokenize_ok(a, texts[i], x);
        tokenize_ok(b, texts[i], y);
        ck_assert_mem_eq(x, y, sizeof x);
    }
    clipn_tokenizer_free(b);
    /* malformed merges */
    ck_assert_int_eq(clipn_tokenizer_from_merges("a b c\n", 6, &b, &err), CLIPN_E_FORMAT);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(clipn_tokenizer_from_merges("", 0, &b, &err), CLIPN_E_FORMAT);
    ck_assert_int_eq(clipn_tokenizer_from_file("no/such/file.txt.gz", &b, &err), CLIPN_E_IO);
    /* a tiny vocab: 512 byte symbols, 1 merge, then the special tokens */
    ck_assert_int_eq(clipn_tokenizer_from_merges("h i</w>\n", 8, &b, &err), CLIPN_OK);
    int32_t ids[CTX];
    tokenize_ok(b, "hi", ids);
    ck_assert_int_eq(ids[0], 513); /* <start_of_text> = 512 + 1 merge */
    ck_assert_int_eq(ids[1], 512); /* "h" + "i</w>" */
    ck_assert_int_eq(ids[2], 514);
    clipn_tokenizer_free(b);
    clipn_tokenizer_free(a);
    free(buf);
}
END_TEST

/* The vocab file is read only if it is a regular file of at most 64 MiB: a FIFO blocked
 * forever in gzopen. */
START_TEST(test_vocab_special_files_refused)
{
    clipn_tokenizer *tok = (clipn_tokenizer *)1;
    clipn_error err;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/clipn_vocab_fifo_%ld.txt", test_tmp_dir(), (long)getpid());
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    alarm(10);
    clipn_status st = clipn_tokenizer_from_file(fifo, &tok, &err);
    alarm(0);
    unlink(fifo);
    ck_assert_int_eq(st, CLIPN_E_IO);
    ck_assert_ptr_null(tok);
    ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
    ck_assert_int_eq(clipn_tokenizer_from_file("/dev/zero", &tok, &err), CLIPN_E_IO);
    ck_assert_int_eq(clipn_tokenizer_from_file("tests", &tok, &err), CLIPN_E_IO);
    ck_assert_int_eq(clipn_tokenizer_from_file("/nonexistent/vocab.txt", &tok, &err), CLIPN_E_IO);
    ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/vocab.txt"));
}
END_TEST

Suite *make_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_corpus_matches_official);
    tcase_add_test(tc, test_vocab_special_files_refused);
    tcase_add_test(tc, test_mojibake_not_repaired);
    tcase_add_test(tc, test_known_ids);
    tcase_add_test(tc, test_truncation_and_context_lengths);
    tcase_add_test(tc, test_limits_and_hostile_input);
    tcase_add_test(tc, test_sources_agree);
    suite_add_tcase(s, tc);
    return s;
}
