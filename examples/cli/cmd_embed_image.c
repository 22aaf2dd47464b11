/* clipn embed-image: images (or preprocessed pixels) -> raw image features [N, D] .npy. */
#include "cli_backend.h"
#include "cli_inputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn embed-image --model M --out F.npy\n"
            "                         (IMAGE... | --list FILE | --pixels P.npy) [--batch N]\n"
            "                         [--local-out L.npy]\n"
            "\n"
            "Encode images with the image tower. Writes the raw (not normalised) features\n"
            "as float32 [N, embed_dim].\n"
            "\n"
            "  --model M       libclipn model file (required)\n"
            "  --out F.npy     output file (required)\n"
            "  --pixels P.npy  float32 [N, 3, S, S] already preprocessed (clipn preprocess);\n"
            "                  S other than the model's size interpolates the positions\n"
            "  --batch N       images per forward pass (default 8)\n"
            "  --local-out L.npy  also the GL-MCM local (patch) features, raw, float32\n"
            "                  [N, patches, embed_dim], patches = (S / patch_size)^2 in grid\n"
            "                  order (model's image size only)\n"
            CLI_PRECISION_USAGE
            CLI_INPUTS_HELP
            "Rows follow the order of the images.\n");
}

/* Encode --pixels: [N, 3, S, S] at any multiple of the patch size. */
static int embed_pixels(const char *cmd, clipn_ctx *ctx, const clipn_config *c,
                        const char *path, float **feats, float **locals, size_t *n_out)
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
    clipn_status s;
    if (locals) {
        const size_t G = (size_t)(c->image_size / c->patch_size);
        if (shape[2] != (size_t)c->image_size) {
            free(px);
            return cli_fail(cmd, "--local-out needs pixels of the model's size %d, not %zu",
                            c->image_size, shape[2]);
        }
        if (!(*locals = malloc(shape[0] * G * G * (size_t)c->embed_dim * sizeof(float)))) {
            free(px);
            return cli_fail(cmd, "out of memory for %zu local features", shape[0]);
        }
        s = clipn_encode_image_local(ctx, px, (int)shape[0], *feats, *locals, &err);
    } else {
        s = clipn_encode_image_sized(ctx, px, (int)shape[0], (int)shape[2], *feats, &err);
    }
    free(px);
    return s == CLIPN_OK ? 0 : cli_fail_err(cmd, &err);
}

/* Encode image files, `batch` at a time; the first unreadable one stops it. */
typedef struct feature_rows {
    const char *cmd;
    float *feats;
    size_t dim;
    float *locals;       /* NULL: global features only */
    size_t local_floats; /* patches * dim */
} feature_rows;

static int keep_feature(void *user, size_t i, const float *feature, const char *error)
{
    feature_rows *r = user;
    if (!feature)
        return cli_fail(r->cmd, "%s", error);
    memcpy(r->feats + i * r->dim, feature, r->dim * sizeof *feature);
    if (r->locals)
        memcpy(r->locals + i * r->local_floats, feature + r->dim,
               r->local_floats * sizeof *feature);
    return 0;
}

static int embed_files(const char *cmd, const clipn_model *model, clipn_ctx *ctx, int batch,
                       char **files, size_t n, float *feats, float *locals)
{
    const clipn_config *c = clipn_model_config(model);
    const size_t G = (size_t)(c->image_size / c->patch_size), E = (size_t)c->embed_dim;
    feature_rows rows = {cmd, feats, E, locals, G * G * E};
    const cli_image_job job = {.cmd = cmd, .model = model, .ctx = ctx, .paths = files,
                               .n = n, .batch = batch,
                               .encoder = locals ? CLI_ENC_LOCAL : CLI_ENC_FEATURE,
                               .on_image = keep_feature, .user = &rows};
    return cli_backend_active->encode_images(&job);
}

int cmd_embed_image(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out_path = NULL, *pixels_path = NULL;
    const char *list_file = NULL, *local_path = NULL;
    int batch = 8, n_pos;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_PRECISION_OPTION,
        CLI_STRING("--out", &out_path),
        CLI_STRING("--pixels", &pixels_path),
        CLI_INT("--batch", &batch, 1, 4096),
        CLI_LIST_OPTION(list_file),
        CLI_STRING("--local-out", &local_path),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_pos);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (!model_path || !out_path)
        return cli_fail(cmd, "--model M and --out F.npy are required (see --help)"), 2;
    if (pixels_path && (n_pos > 0 || list_file))
        return cli_fail(cmd, "give images or --pixels, not both (see --help)"), 2;
    cli_image_list inputs = {0};
    if (!pixels_path &&
        (st = cli_inputs_gather(cmd, argv + 1, n_pos, list_file, CLI_NO_LABELS, &inputs)))
        return st;
    const cli_path outs[] = {{"--out", out_path}};
    const cli_path ins[] = {{"--model", model_path}, {"--pixels", pixels_path},
                            {"--list", list_file}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, 3)) ||
        (st = cli_check_paths_list(cmd, outs, 1, "image", inputs.paths, inputs.n))) {
        cli_image_list_free(&inputs);
        return st;
    }

    clipn_model *model = cli_load_model(cmd, model_path);
    if (!model) {
        cli_image_list_free(&inputs);
        return 1;
    }
    const clipn_config *c = clipn_model_config(model);
    clipn_ctx *ctx = NULL;
    clipn_error err;
    clipn_ctx_opts opts = {.max_batch = batch, .threads = 0};
    float *feats = NULL, *locals = NULL;
    size_t n = inputs.n;
    const size_t P = (size_t)(c->image_size / c->patch_size) * (size_t)(c->image_size / c->patch_size);
    int rc;
    if (clipn_ctx_new(model, &opts, &ctx, &err) != CLIPN_OK) {
        rc = cli_fail_err(cmd, &err);
    } else if (pixels_path) {
        rc = embed_pixels(cmd, ctx, c, pixels_path, &feats, local_path ? &locals : NULL, &n);
    } else {
        feats = malloc(n * (size_t)c->embed_dim * sizeof(float));
        if (local_path)
            locals = malloc(n * P * (size_t)c->embed_dim * sizeof(float));
        rc = feats && (locals || !local_path)
                 ? embed_files(cmd, model, ctx, batch, inputs.paths, n, feats, locals)
                 : cli_fail(cmd, "out of memory for %zu features", n);
    }
    if (rc == 0) {
        size_t shape[2] = {n, (size_t)c->embed_dim};
        rc = cli_write_npy_f32(cmd, out_path, feats, 2, shape);
    }
    if (rc == 0 && local_path) {
        size_t shape[3] = {n, P, (size_t)c->embed_dim};
        rc = cli_write_npy_f32(cmd, local_path, locals, 3, shape);
    }
    free(feats);
    free(locals);
    clipn_ctx_free(ctx);
    clipn_model_free(model);
    cli_image_list_free(&inputs);
    return rc;
}
