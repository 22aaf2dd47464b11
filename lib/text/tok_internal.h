/* Tokenizer internals shared by lib/text/tokenizer.c, lib/text/clean.c and the generated tables
 * (lib/text/generated/html_entities.c, lib/text/generated/unicode_tables.c). Not installed. */
#ifndef CLIPN_TOK_INTERNAL_H
#define CLIPN_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_entity {
    const char *name;  /* without the leading '&'; with ';' when the entity has it */
    const char *value; /* UTF-8 */
} tok_entity;

typedef struct tok_width_entry {
    uint32_t cp;
    const char *value; /* UTF-8 */
} tok_width_entry;

/* generated tables (weights_tools/gen_html_entities.py, weights_tools/gen_tok_unicode.py) */
extern const tok_entity tok_html5_entities[];
extern const int tok_n_html5_entities;
extern const tok_entity tok_upper_entities[];
extern const int tok_n_upper_entities;
extern const uint32_t tok_invalid_charrefs[][2];
extern const int tok_n_invalid_charrefs;
extern const uint32_t tok_invalid_codepoints[];
extern const int tok_n_invalid_codepoints;
extern const uint32_t tok_case_ignorable_ranges[][2];
extern const int tok_n_case_ignorable_ranges;
extern const uint32_t tok_cased_ranges[][2];
extern const int tok_n_cased_ranges;
extern const tok_width_entry tok_width_map[];
extern const int tok_n_width_map;
extern const uint32_t tok_nfc_blockers[];
extern const int tok_n_nfc_blockers;

/* A growable array of code points. */
typedef struct tok_buf {
    uint32_t *v;
    size_t n, cap;
} tok_buf;

void tok_buf_free(tok_buf *b);

/* The official clean-up, up to and including str.lower(): UTF-8 (decoded as Python's
 * errors='replace') -> ftfy.fix_text (without fix_encoding) -> html.unescape twice -> strip
 * -> collapse \s+ -> strip -> lower. Returns 0, or -1 when out of memory. `out` is reset. */
int tok_clean_text(const char *text, size_t len, tok_buf *out);

/* Unicode classes as the `regex` module sees them (Unicode 15 = libutf8proc 2.8). */
int tok_is_regex_space(uint32_t cp);
int tok_is_letter(uint32_t cp);
int tok_is_number(uint32_t cp);

#endif
