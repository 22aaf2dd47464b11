/* Tokenizer throughput on the prompts that building ImageNet class heads needs: the 1000
 * class names x the official template lines (each formatted as Python's str.format, quote
 * marks included). The official file has 127 newlines but 128 lines: the official
 * readlines() keeps the last one, so there are 128,000 prompts. The first pass starts with
 * an empty word cache.
 *
 *   build/bench/bench_tokenizer [VOCAB [CLASSES [TEMPLATES]]]   (run from the repo root)
 */
#include "clipn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
    const char *vocab = argc > 1 ? argv[1] : "weights_tools/bpe_simple_vocab_16e6.txt.gz";
    const char *classes_path = argc > 2 ? argv[2] : "data/imagenet_classes.txt";
    const char *templates_path = argc > 3 ? argv[3] : "data/clipn_templates_official.txt";
    int n_classes = 0, n_templates = 0;
    char **classes = read_lines(classes_path, &n_classes);
    char **templates = read_lines(templates_path, &n_templates);
    if (!classes || !templates || !n_classes || !n_templates) {
        fprintf(stderr, "bench_tokenizer: cannot read %s or %s\n", classes_path, templates_path);
        return 1;
    }
    clipn_error err;
    clipn_tokenizer *tok = NULL;
    double t0 = now();
    if (clipn_tokenizer_from_file(vocab, &tok, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.message);
        return 1;
    }
    double t_load = now() - t0;

    size_t n = (size_t)n_classes * (size_t)n_templates;
    char **prompts = malloc(n * sizeof *prompts);
    if (!prompts)
        return 1;
    for (int c = 0; c < n_classes; c++)
        for (int t = 0; t < n_templates; t++)
            if (clipn_format_template(templates[t], classes[c], &prompts[(size_t)c * n_templates + t],
                                      &err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.message);
                return 1;
            }

    int32_t ids[77];
    long checksum = 0;
    double best = 1e30, first = 0;
    for (int rep = 0; rep < 3; rep++) {
        t0 = now();
        for (size_t i = 0; i < n; i++) {
            if (clipn_tokenize(tok, prompts[i], strlen(prompts[i]), ids, 77, &err)) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.message);
                return 1;
            }
            checksum += ids[1] + ids[5];
        }
        double dt = now() - t0;
        if (rep == 0)
            first = dt;
        if (dt < best)
            best = dt;
    }
    printf("tokenizer: load %.1f ms; %zu prompts (%d classes x %d templates), 1 thread:\n"
           "  first pass %.3f s = %.0f prompts/s; best of 3 %.3f s = %.0f prompts/s "
           "(checksum %ld)\n",
           1e3 * t_load, n, n_classes, n_templates, first, (double)n / first, best,
           (double)n / best, checksum);

    for (size_t i = 0; i < n; i++)
        free(prompts[i]);
    free(prompts);
    for (int i = 0; i < n_classes; i++)
        free(classes[i]);
    for (int i = 0; i < n_templates; i++)
        free(templates[i]);
    free(classes);
    free(templates);
    clipn_tokenizer_free(tok);
    return 0;
}
