/* Image inputs, the same for every subcommand that takes images (preprocess, embed-image,
 * classify, eval): image files, folders (walked, images only, sorted by path) and list
 * files (one path per line, or "path,label" where labels matter; "-" = stdin). */
#ifndef CLIPN_CLI_INPUTS_H
#define CLIPN_CLI_INPUTS_H

#include "cli.h"

/* paths[i] in input order; labels[i] is NULL when unknown (only filled with labels on:
 * the "path,label" field, or the parent folder's name for a folder's images). */
typedef struct cli_image_list {
    char **paths;
    char **labels;
    size_t n;
} cli_image_list;

enum { CLI_NO_LABELS = 0, CLI_LABELS = 1 };

/* Append one positional: a folder (walked recursively, following symlinks; files with an
 * image extension that are regular files, sorted by path; anything else is skipped) or a
 * file (taken as an image, opened only when decoded). 0, or -1 with the message printed. */
int cli_inputs_add_path(const char *cmd, const char *path, int labels, cli_image_list *list);
/* Append the paths of a list file ("-" = stdin): one per line, CR/LF stripped, empty lines
 * ignored; with labels, "path,label" is split at the last comma. A file that is not text
 * (NUL bytes, an image's or a model's signature) is refused, saying what it looks like. */
int cli_inputs_add_list(const char *cmd, const char *list_file, int labels, cli_image_list *list);
/* A LIST argument (eval's --id / --ood): a folder, or else a list file. */
int cli_inputs_add_spec(const char *cmd, const char *spec, int labels, cli_image_list *list);
/* The positionals pos[0..n_pos-1] in order, then --list (may be NULL). Refuses an empty
 * result ("no images given", a usage error: returns 2). 0, 1 (runtime error) or 2. */
int cli_inputs_gather(const char *cmd, char **pos, int n_pos, const char *list_file, int labels,
                      cli_image_list *list);
void cli_image_list_free(cli_image_list *list);

/* What a file's first n bytes say it is ("a JPEG image", "a zip archive", "a safetensors
 * file (a model or heads)", ...), from its signature; NULL when none is known. */
const char *cli_sniff(const unsigned char *s, size_t n);

/* The option row for --list FILE. */
#define CLI_LIST_OPTION(dest) CLI_STRING("--list", &(dest))
/* The usage lines every image subcommand prints for its inputs. */
#define CLI_INPUTS_HELP                                                                     \
    "  IMAGE...         image files, or folders (searched recursively for images,\n"        \
    "                   sorted by path)\n"                                                 \
    "  --list FILE      one image path per line (\"-\" = stdin), after the IMAGEs\n"

#endif
