/* clipn embed-text: texts -> raw text features [N, D] .npy from the yes or the no tower. */
#include "cli.h"
#include "cli_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn embed-text [--no] --model M --out F.npy (--file LINES | TEXT...)\n"
            "                        [--batch N]\n"
            "\n"
            "Tokenize each text (the BPE embedded in the model) and encode it with the text\n"
            "tower, or with the \"no\" tower when --no is given. Writes the raw (not\n"
            "normalised) features as float32 [N, embed_dim].\n"
            "\n"
            "  --model M     libclipn model file (required)\n"
            "  --out F.npy   output file (required)\n"
            "  --no          use the \"no\" text tower (CLIPN models only)\n"
            "  --file LINES  one text per line (empty lines skipped)\n"
            "  --batch N     texts per forward pass (default 8)\n"
            CLI_PRECISION_USAGE);
}

int cmd_embed_text(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out_path = NULL, *file = NULL;
    int no = 0, batch = 8, n_texts;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_PRECISION_OPTION,
        CLI_STRING("--out", &out_path),
        CLI_STRING("--file", &file),
        CLI_FLAG("--no", &no),
        CLI_INT("--batch", &batch, 1, 4096),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_texts);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (!model_path || !out_path)
        return cli_fail(cmd, "--model M and --out F.npy are required (see --help)"), 2;
    if ((n_texts > 0) == (file != NULL))
        return cli_fail(cmd, "give texts or --file, exactly one (see --help)"), 2;

    const cli_path outs[] = {{"--out", out_path}};
    const cli_path ins[] = {{"--model", model_path}, {"--file", file}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, 2)))
        return st;

    char **texts = argv + 1, **lines = NULL;
    int n = n_texts;
    if (file && (n = cli_read_lines(cmd, file, &lines)) < 0)
        return 1;
    if (file) {
        texts = lines;
        if (n == 0) {
            free(lines);
            return cli_fail(cmd, "%s: no texts", file);
        }
    }

    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model) {
        free(lines);
        return 1;
    }
    const clipn_config *c = clipn_model_config(model);
    clipn_tokenizer *tok = NULL;
    clipn_ctx *ctx = NULL;
    clipn_error err;
    clipn_ctx_opts opts = {.max_batch = batch, .threads = 0};
    float *feats = malloc((size_t)n * c->embed_dim * sizeof(float));
    int rc = 1;
    if (!feats) {
        rc = cli_fail(cmd, "out of memory for %d texts", n);
        goto done;
    }
    if (clipn_tokenizer_from_model(model, &tok, &err) != CLIPN_OK ||
        clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK ||
        cli_backend_active->encode_texts(model, ctx, tok, no, texts, n, feats, &err) != CLIPN_OK)
        goto fail;
    size_t shape[2] = {(size_t)n, (size_t)c->embed_dim};
    rc = cli_write_npy_f32(cmd, out_path, feats, 2, shape);
    goto done;
fail:
    rc = cli_fail_err(cmd, &err);
done:
    free(feats);
    clipn_tokenizer_free(tok);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    free(lines);
    return rc;
}
