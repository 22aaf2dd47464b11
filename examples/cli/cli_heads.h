/* Helpers shared by `clipn head`, `classify` and `eval`: class heads from a head file or
 * built on the fly, a terminal progress bar; image inputs are cli_inputs.h. */
#ifndef CLIPN_CLI_HEADS_H
#define CLIPN_CLI_HEADS_H

#include "cli_inputs.h"

typedef struct cli_head_args {
    const char *head;          /* --head H */
    const char *classes;       /* --classes FILE */
    const char *templates;     /* --templates FILE (NULL = the official CLIPN templates) */
    const char *no_templates;  /* --no-templates FILE (NULL = same as the yes templates) */
} cli_head_args;

/* The option-table rows that fill a cli_head_args (cli_parse_args); `clipn head` builds
 * heads, so it takes these without --head. */
#define CLI_HEAD_BUILD_OPTIONS(a)                                                          \
    CLI_STRING("--classes", &(a).classes), CLI_STRING("--templates", &(a).templates),      \
        CLI_STRING("--no-templates", &(a).no_templates)
#define CLI_HEAD_OPTIONS(a) CLI_STRING("--head", &(a).head), CLI_HEAD_BUILD_OPTIONS(a)

/* Progress callback: a bar with rate and ETA on stderr, only when stderr is a terminal. */
int cli_progress(void *user, size_t done, size_t total);
void cli_progress_end(void);

/* Usage checks before anything is loaded: --head and --classes exclude each other, one is
 * required, and --templates / --no-templates with --head (they would be ignored) are
 * refused. 0, or 2 with the message printed. */
int cli_head_args_check(const char *cmd, const cli_head_args *a);
/* --model M is required: 0, or 2 with the message printed. */
int cli_require_model(const char *cmd, const char *model_path);

/* Class names from FILE, one per line (empty lines ignored): a blank name (spaces only) is
 * refused; a name given twice is warned about on stderr (one line per name, with its
 * count). Returns the count (> 0) or -1 (message printed); *lines as cli_read_lines. */
int cli_read_classes(const char *cmd, const char *path, char ***lines);

/* Heads from --head (refused when built from another model) or built from --classes with
 * the templates. class_names is always filled. NULL + message on failure. */
clipn_heads *cli_get_heads(const char *cmd, const clipn_model *model, clipn_ctx *ctx,
                           const cli_head_args *a);

/* Read NegLabel negative prompts (one per line) and attach them to heads with
 * clipn_heads_add_negatives (groups 0 = the default). 0 or 1 (message printed).
 * (cmd_neg_labels.c) */
int cli_add_negatives(const char *cmd, clipn_ctx *ctx, clipn_heads *heads, const char *path,
                      int groups);

/* Read templates (official ones when path is NULL). Every template must have a "{}" field
 * for the class name (clipn_format_template's syntax): one without is refused, naming it.
 * *owned must be freed. */
int cli_get_templates(const char *cmd, const char *path, const char *const **templates,
                      char ***owned);

/* Class index for a label: exact match, else case-insensitive with '_' == ' '; -1. */
int cli_class_index(const clipn_heads *heads, const char *label);


#endif
