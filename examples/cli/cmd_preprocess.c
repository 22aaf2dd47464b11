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
    int size = 0, first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model_path = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            if (cli_parse_int_range(cmd, "--size", argv[++i], 1, 8192, &size))
                return 2;
        } else if (!strcmp(argv[i], "--")) {
            first = i + 1;
            break;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_fail(cmd, "unknown or incomplete option %s (see --help)", argv[i]);
            return 2;
        } else {
            first = i;
            break;
        }
    }
    int n = argc - first;
    if (!out_path || n <= 0) {
        usage(stderr);
        return 2;
    }
    if (model_path && size) {
        cli_fail(cmd, "give --model or --size, not both");
        return 2;
    }

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
