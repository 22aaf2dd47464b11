/* Reads a .npy with the CLI's strict reader (examples/cli/cli_util.c) and prints what it
 * read: "ndim d0 d1 ...", then every value with %.9g, one per line. Exit 1 when refused.
 * tests/cli/test_npy_strict.py compares this with what numpy reads. */
#include "cli.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    float *x = NULL;
    int ndim = 0;
    size_t shape[8];
    if (argc != 2)
        return 2;
    if (cli_read_npy_f32("npy_dump", argv[1], &x, &ndim, shape))
        return 1;
    size_t total = 1;
    printf("%d", ndim);
    for (int i = 0; i < ndim; i++) {
        printf(" %zu", shape[i]);
        total *= shape[i];
    }
    putchar('\n');
    for (size_t i = 0; i < total; i++)
        printf("%.9g\n", x[i]);
    free(x);
    return fflush(stdout) != 0;
}
