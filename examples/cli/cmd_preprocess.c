/* clipn preprocess: images -> float32 [N, 3, S, S] .npy, the official validation transform. */
#include "cli_inputs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clipn preprocess [--model M | --size S] --out X.npy (IMAGE... | --list FILE)\n"
            "\n"
            "Resize the shorter side to S (PIL bicubic), centre-crop SxS, convert to RGB,\n"
            "scale to [0,1] and normalise, exactly as open_clip's validation transform.\n"
            "Writes float32 [N, 3, S, S].\n"
            "\n"
            "  --model M    take image size, mean and std from a libclipn model file\n"
            "  --size S     image size without a model (OpenAI mean/std; default 224)\n"
            "  --out X.npy  output file (required)\n"
            CLI_INPUTS_HELP
            "Rows follow the order of the images.\n");
}

int cmd_preprocess(int argc, char **argv)
{
    const char *cmd = argv[0], *model_path = NULL, *out_path = NULL, *list_file = NULL;
    int size = 0, n_pos;
    const cli_opt options[] = {
        CLI_STRING("--model", &model_path),
        CLI_STRING("--out", &out_path),
        CLI_INT("--size", &size, 1, 8192),
        CLI_LIST_OPTION(list_file),
    };
    int st = cli_parse_args(cmd, argc, argv, options, (int)(sizeof options / sizeof options[0]), usage, &n_pos);
    if (st != CLI_ARGS_OK)
        return st == CLI_ARGS_HELP ? 0 : st;
    if (!out_path)
        return cli_fail(cmd, "--out X.npy is required (see --help)"), 2;
    if (model_path && size)
        return cli_fail(cmd, "give --model or --size, not both"), 2;
    cli_image_list inputs;
    if ((st = cli_inputs_gather(cmd, argv + 1, n_pos, list_file, CLI_NO_LABELS, &inputs)))
        return st;
    size_t n = inputs.n;

    const cli_path outs[] = {{"--out", out_path}};
    const cli_path ins[] = {{"--model", model_path}, {"--list", list_file}};
    if ((st = cli_check_paths(cmd, outs, 1, ins, 2)) ||
        (st = cli_check_paths_list(cmd, outs, 1, "image", inputs.paths, n))) {
        cli_image_list_free(&inputs);
        return st;
    }

    clipn_image_opts opts;
    clipn_image_opts_default(&opts);
    if (model_path) {
        clipn_model *m = cli_load_model(cmd, model_path);
        if (!m) {
            cli_image_list_free(&inputs);
            return 1;
        }
        clipn_image_opts_from_model(m, &opts);
        clipn_model_free(m);
    } else if (size) {
        opts.image_size = size;
    }

    const size_t per = (size_t)3 * opts.image_size * opts.image_size;
    float *pixels = n <= SIZE_MAX / sizeof(float) / per ? malloc(n * per * sizeof(float)) : NULL;
    int rc = 0;
    if (!pixels)
        rc = cli_fail(cmd, "out of memory for %zu images", n);
    for (size_t i = 0; i < n && !rc; i++) {
        clipn_error err;
        if (clipn_preprocess_file(inputs.paths[i], &opts, pixels + i * per, &err) != CLIPN_OK)
            rc = cli_fail_err(cmd, &err);
    }
    size_t shape[4] = {n, 3, (size_t)opts.image_size, (size_t)opts.image_size};
    if (!rc)
        rc = cli_write_npy_f32(cmd, out_path, pixels, 4, shape);
    free(pixels);
    cli_image_list_free(&inputs);
    return rc;
}
