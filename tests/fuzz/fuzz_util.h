/* Shared by the libFuzzer harnesses: hand a byte buffer to an API that wants a path. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* One memfd per process, rewritten for every input; its /proc path is what we pass on. */
static int fuzz_fd = -1;
static char fuzz_path[64];

static const char *fuzz_write_file(const uint8_t *data, size_t size)
{
    if (fuzz_fd < 0) {
        fuzz_fd = memfd_create("fuzz_input", 0);
        if (fuzz_fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(fuzz_path, sizeof fuzz_path, "/proc/self/fd/%d", fuzz_fd);
    }
    if (ftruncate(fuzz_fd, 0) != 0 || pwrite(fuzz_fd, data, size, 0) != (ssize_t)size) {
        perror("memfd write");
        abort();
    }
    return fuzz_path;
}

#endif
