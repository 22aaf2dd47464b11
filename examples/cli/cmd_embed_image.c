/* clipn embed-image: images (or preprocessed pixels) -> raw image features [N, D] .npy. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn embed-image --model M --out F.npy (IMAGE... | --pixels P.npy)\n"
            "                         [--batch N]\n"
            "\n"
            "Encode images with the image tower. Writes the raw (not normalised) features\n"
            "as float32 [N, embed_dim].\n"
            "\n"
            "  --model M       libclipn model file (required)\n"
            "  --out F.npy     output file (required)\n"
            "  --pixels P.npy  float32 [N, 3, S, S] already preprocessed (clipn preprocess);\n"
            "                  S other than the model's size interpolates the positions\n"
            "  --batch N       images per forward pass (default 8)\n");
}

/* Encode --pixels: [N, 3, S, S] at any multiple of the patch size. */
static int embed_pixels(const char *cmd, clipn_ctx *ctx, const clipn_config *c,
                        const char *path, float **feats, size_t *n_out)
{
    float *px = NULL;
    int ndim = 0;
    size_t shape[8];
    if (cli_read_npy_f32(cmd, path, &px, &ndim, shape))
        return 1;
    if (ndim != 4 || shape[0] < 1 || shape[0] > (size_t)1 << 24 || shape[1] != 3 ||
        shape[2] != shape[3] || shape[2] < 1 || shape[2] > 8192) {
        free(px);
        return cli_fail(cmd, "%s: expected float32 [N, 3, S, S] pixels", path);
    }
    *n_out = shape[0];
    *feats = malloc(shape[0] * (size_t)c->embed_dim * sizeof(float));
    if (!*feats) {
        free(px);
        return cli_fail(cmd, "out of memory for %zu features", shape[0]);
    }
    clipn_error err;
    clipn_status s = clipn_encode_image_sized(ctx, px, (int)shape[0], (int)shape[2], *feats, &err);
    free(px);
    return s == CLIPN_OK ? 0 : cli_fail_err(cmd, &err);
}

/* Encode image files, preprocessing `batch` at a time. */
static int embed_files(const char *cmd, const clipn_model *model, clipn_ctx *ctx, int batch,
                       char **files, int n, float *feats)
{
    clipn_image_opts opts;
    clipn_image_opts_from_model(model, &opts);
    const clipn_config *c = clipn_model_config(model);
    const size_t per = (size_t)3 * opts.image_size * opts.image_size;
    float *px = malloc((size_t)batch * per * sizeof(float));
    if (!px)
        return cli_fail(cmd, "out of memory for a batch of %d images", batch);
    clipn_error err;
    for (int done = 0; done < n; done += batch) {
        const int k = n - done < batch ? n - done : batch;
        for (int i = 0; i < k; i++)
            if (clipn_preprocess_file(files[done + i], &opts, px + (size_t)i * per, &err) !=
                CLIPN_OK)
                goto fail;
        if (clipn_encode_image(ctx, px, k, feats + (size_t)done * c->embed_dim, &err) != CLIPN_OK)
            goto fail;
    }
    free(px);
    return 0;
fail:
    free(px);
    return cli_fail_err(cmd, &err);
}

int cmd_embed_image(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out_path = NULL, *pixels_path = NULL;
    int batch = 8, n_files;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_STRING("--out", &out_path),
        CLI_STRING("--pixels", &pixels_path),
        CLI_INT("--batch", &batch, 1, 4096),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_files);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    const int first = 1;
    if (!model_path || !out_path || (n_files > 0) == (pixels_path != NULL)) {
        if (model_path && out_path)
            cli_fail(cmd, "give image files or --pixels, not both (see --help)");
        else
            usage(stderr);
        return 2;
    }
    const cli_path outs[] = {{"--out", out_path}};
    const cli_path ins[] = {{"--model", model_path}, {"--pixels", pixels_path}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, 2)) ||
        (st = cli_check_paths_list(cmd, outs, 1, "image", argv + first, (size_t)n_files)))
        return st;

    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model)
        return 1;
    const clipn_config *c = clipn_model_config(model);
    clipn_ctx *ctx = NULL;
    clipn_error err;
    clipn_ctx_opts opts = {.max_batch = batch, .threads = 0};
    float *feats = NULL;
    size_t n = (size_t)n_files;
    int rc;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        rc = cli_fail_err(cmd, &err);
    } else if (pixels_path) {
        rc = embed_pixels(cmd, ctx, c, pixels_path, &feats, &n);
    } else {
        feats = malloc(n * (size_t)c->embed_dim * sizeof(float));
        rc = feats ? embed_files(cmd, model, ctx, batch, argv + first, n_files, feats)
                   : cli_fail(cmd, "out of memory for %d features", n_files);
    }
    if (rc == 0) {
        size_t shape[2] = {n, (size_t)c->embed_dim};
        rc = cli_write_npy_f32(cmd, out_path, feats, 2, shape);
    }
    free(feats);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    return rc;
}
