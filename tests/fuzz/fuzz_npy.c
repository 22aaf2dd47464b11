/* libFuzzer: the CLI's .npy reader (examples/cli/cli_util.c, compiled in). */
#include "cli.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* cli_read_npy_f32 prints its refusal with fprintf(stderr): point the stdio stream (not
       fd 2, which libFuzzer and the sanitizers report on) at /dev/null */
    FILE *null = fopen("/dev/null", "w");
    if (!null)
        abort();
    stderr = null;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file(data, size);
    float *x = NULL;
    int ndim = 0;
    size_t shape[8];
    if (cli_read_npy_f32("fuzz", path, &x, &ndim, shape) != 0)
        return 0;
    size_t total = 1;
    for (int i = 0; i < ndim; i++)
        total *= shape[i];
    volatile float sum = 0; /* touch every element: the reader promised this many */
    for (size_t i = 0; i < total; i++)
        sum += x[i];
    (void)sum;
    free(x);
    return 0;
}
