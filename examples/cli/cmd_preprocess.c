/* clipn preprocess: images -> float32 [N, 3, S, S] .npy, the official validation transform. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn preprocess [--model M | --size S] --out X.npy IMAGE...\n"
            "\n"
            "Resize the shorter side to S (PIL bicubic), centre-crop SxS, convert to RGB,\n"
            "scale to [0,1] and normalise, exactly as open_clip's validation transform.\n"
            "Writes float32 [N, 3, S, S].\n"
            "\n"
            "  --model M    take image size, mean and std from a libclipn model file\n"
            "  --size S     image size without a model (OpenAI mean/std; default 224)\n"
            "  --out X.npy  output file (required)\n");
}

int cmd_preprocess(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out_path = NULL;
    int size = 0, n;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_STRING("--out", &out_path),
        CLI_INT("--size", &size, 1, 8192),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    const int first = 1;
    if (!out_path || n <= 0) {
        usage(stderr);
        return 2;
    }
    if (model_path && size) {
        cli_fail(cmd, "give --model or --size, not both");
        return 2;
    }

    const cli_path outs[] = {{"--out", out_path}}, ins[] = {{"--model", model_path}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, 1)) ||
        (st = cli_check_paths_list(cmd, outs, 1, "image", argv + first, (size_t)n)))
        return st;

    clipn_image_opts opts;
    clipn_image_opts_default(&opts);
    if (model_path) {
        clipn_model *m = cli_load_model(cmd, model_path);
        if (!m)
            return 1;
        clipn_image_opts_from_model(m, &opts);
        clipn_model_free(m);
    } else if (size) {
        opts.image_size = size;
    }

    const size_t per = (size_t)3 * opts.image_size * opts.image_size;
    float *pixels = malloc((size_t)n * per * sizeof(float));
    if (!pixels)
        return cli_fail(cmd, "out of memory for %d images", n);
    for (int i = 0; i < n; i++) {
        clipn_error err;
        if (clipn_preprocess_file(argv[first + i], &opts, pixels + (size_t)i * per, &err) !=
            CLIPN_OK) {
            free(pixels);
            return cli_fail_err(cmd, &err);
        }
    }
    size_t shape[4] = {(size_t)n, 3, (size_t)opts.image_size, (size_t)opts.image_size};
    int rc = cli_write_npy_f32(cmd, out_path, pixels, 4, shape);
    free(pixels);
    return rc;
}
