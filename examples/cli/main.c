/* clipn: CLIPN zero-shot OOD detection from the shell. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"info", cmd_info, "what a file is: a model's config, a heads file's classes, or how to convert it"},
    {"tokenize", cmd_tokenize, "print the token ids of texts"},
    {"preprocess", cmd_preprocess, "write preprocessed images as a float32 .npy"},
    {"embed-image", cmd_embed_image, "image features as a float32 .npy"},
    {"embed-text", cmd_embed_text, "text features (yes or --no tower) as a float32 .npy"},
    {"head", cmd_head, "build yes/no class heads once and save them"},
    {"classify", cmd_classify, "classify images, with CLIPN's OOD verdicts"},
    {"eval", cmd_eval, "OOD metrics (AUROC, FPR95) on ID and OOD image sets"},
    {"neg-labels", cmd_neg_labels, "mine NegLabel negative labels (WordNet) for `head --negatives`"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: clipn <command> [options]   (clipn <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv)
{
    /* a write past RLIMIT_FSIZE fails with EFBIG and is reported, instead of killing the
     * process with a partial file left behind */
    signal(SIGXFSZ, SIG_IGN);
    cli_stdout_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return cli_stdout_close("help");
    }
    if (!strcmp(argv[1], "--version")) {
        printf("clipn %s\n", CLIPN_VERSION_STRING);
        return cli_stdout_close("--version");
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            /* output lost (a full disk, a file size limit) is an error, never exit 0 */
            if (cli_stdout_close(argv[1]))
                rc = rc ? rc : 1;
            return rc;
        }
    fprintf(stderr, "clipn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
