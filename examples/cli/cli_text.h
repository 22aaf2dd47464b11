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
/* As cli_text_fit, but a cut keeps the start and the end ("a long na…e ending"), so names
 * that differ only at the end stay distinct. */
int cli_text_fit_middle(const char *s, int width, char *out, size_t cap);
/* Print s in exactly `width` columns: fitted (cut in the middle), then padded with spaces. */
void cli_print_cell(FILE *f, const char *s, int width);
/* Print s neutralised, in full. */
void cli_print_text(FILE *f, const char *s);

#endif
