/* Text for people: display width (utf8proc's charwidth), truncation at a character
 * boundary with an ellipsis, control characters neutralised. */
#ifndef CLIPN_CLI_TEXT_H
#define CLIPN_CLI_TEXT_H

#include <stddef.h>
#include <stdio.h>

/* Columns s takes on a terminal once neutralised: wide (CJK) characters count 2, combining
 * marks 0; a control character or an invalid byte is shown as \xNN or \uNNNN. */
int cli_text_width(const char *s);
/* s neutralised and cut to at most `width` columns, ending in "…" when cut, into out
 * (cap bytes, always terminated). Returns the columns used. */
int cli_text_fit(const char *s, int width, char *out, size_t cap);
/* Print s in exactly `width` columns: fitted, then padded with spaces (left-aligned). */
void cli_print_cell(FILE *f, const char *s, int width);
/* Print s neutralised, in full. */
void cli_print_text(FILE *f, const char *s);

#endif
