/* clipn tokenize: texts -> the context-length token ids, one line per text. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn tokenize (--model M | --vocab V) (--file LINES | TEXT...)\n"
            "                      [--context-length N]\n"
            "\n"
            "Print the token ids of each text exactly as the official CLIP/CLIPN tokenizer\n"
            "gives them: <start_of_text> tokens <end_of_text>, cut or padded with 0 to the\n"
            "context length. One line per text, ids separated by spaces.\n"
            "\n"
            "  --model M             libclipn model file (uses its embedded BPE merges)\n"
            "  --vocab V             the official bpe_simple_vocab_16e6.txt[.gz] instead\n"
            "  --file LINES          one text per line; every line (empty ones too) gives\n"
            "                        one output line; a trailing CR is dropped\n"
            "  --context-length N    default: the model's, or 77 with --vocab\n");
}

static int print_ids(const char *cmd, clipn_tokenizer *tok, const char *text, size_t len,
                     int32_t *ids, int ctx)
{
    clipn_error err;
    if (clipn_tokenize(tok, text, len, ids, ctx, &err) != CLIPN_OK)
        return cli_fail_err(cmd, &err);
    for (int i = 0; i < ctx; i++)
        printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *vocab_path = NULL, *file = NULL;
    int ctx = 0, n_texts;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_STRING("--vocab", &vocab_path),
        CLI_STRING("--file", &file),
        CLI_INT("--context-length", &ctx, 1, 4096),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_texts);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if ((model_path != NULL) == (vocab_path != NULL)) {
        cli_fail(cmd, "give --model or --vocab, exactly one (see --help)");
        return 2;
    }
    if ((n_texts > 0) == (file != NULL)) {
        cli_fail(cmd, "give texts or --file, exactly one (see --help)");
        return 2;
    }

    clipn_model *model = NULL;
    clipn_tokenizer *tok = NULL;
    clipn_error err;
    if (model_path) {
        if (!(model = cli_load_model(cmd, model_path)))
            return 1;
        if (!ctx)
            ctx = clipn_model_config(model)->context_length;
        if (clipn_tokenizer_from_model(model, &tok, &err) != CLIPN_OK) {
            clipn_model_free(model);
            return cli_fail_err(cmd, &err);
        }
    } else if (clipn_tokenizer_from_file(vocab_path, &tok, &err) != CLIPN_OK) {
        return cli_fail_err(cmd, &err);
    }
    if (!ctx)
        ctx = 77;

    int rc = 0;
    int32_t *ids = malloc((size_t)ctx * sizeof *ids);
    char *data = NULL;
    if (!ids) {
        rc = cli_fail(cmd, "out of memory");
    } else if (file) {
        size_t len;
        if (!(data = cli_read_file(cmd, file, &len))) {
            rc = 1;
        } else {
            /* every line, the last one too when the file does not end with '\n' */
            for (size_t pos = 0; pos < len && !rc;) {
                const char *nl = memchr(data + pos, '\n', len - pos);
                size_t end = nl ? (size_t)(nl - data) : len, n = end - pos;
                if (n && data[pos + n - 1] == '\r')
                    n--;
                rc = print_ids(cmd, tok, data + pos, n, ids, ctx);
                pos = end + 1;
            }
        }
    } else {
        for (int i = 1; i <= n_texts && !rc; i++)
            rc = print_ids(cmd, tok, argv[i], strlen(argv[i]), ids, ctx);
    }
    /* a failed write to stdout is reported by main (cli_stdout_close), with its reason */
    free(data);
    free(ids);
    clipn_tokenizer_free(tok);
    clipn_model_free(model);
    return rc;
}
