/* clipn-mpi: the clipn subcommands that scale out (classify, eval, head, embed-image,
 * embed-text) run across MPI ranks. Rank 0 runs the ordinary subcommand with the
 * distributed backend (mpi_map.c); the other ranks serve it chunks of work. See
 * docs/scale-out.md. */
#include "mpi_map.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"classify", cmd_classify},   {"eval", cmd_eval},           {"head", cmd_head},
    {"embed-image", cmd_embed_image}, {"embed-text", cmd_embed_text},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun [-np N] clipn-mpi <command> [--state DIR] [--chunk N] [--timeout S]\n"
            "                                [--no-rank0-work] [command options]\n\n"
            "The clipn commands classify, eval, head, embed-image and embed-text across MPI\n"
            "ranks, with the same options and byte for byte the same output as clipn.\n\n"
            "  --state DIR       record finished chunks in DIR; running the same command\n"
            "                    again redoes only the chunks not recorded\n"
            "  --chunk N         inputs per chunk (default: 256 images or texts, 32 classes)\n"
            "  --timeout S       end the job when a rank holds a chunk for more than S seconds\n"
            "  --no-rank0-work   rank 0 only hands out chunks and writes the outputs\n"
            "Every rank uses the command's --threads (default: all its cores). docs/scale-out.md\n");
}

/* Removes clipn-mpi's own options from argv (before any "--"); 0, or 2 after a message. */
static int take_options(int *argc, char **argv, mpi_settings *s)
{
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        long *num = !strcmp(a, "--chunk") ? &s->chunk : !strcmp(a, "--timeout") ? &s->timeout : NULL;
        if (!strcmp(a, "--state") || num) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "clipn-mpi: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (num && (cli_parse_long(v, 1, 100000000, num))) {
                fprintf(stderr, "clipn-mpi: %s must be an integer in 1..100000000\n", a);
                return 2;
            }
            if (!num)
                s->state_dir = v;
            continue;
        }
        if (!strcmp(a, "--no-rank0-work")) {
            s->rank0_works = 0;
            continue;
        }
        if (!strcmp(a, "--threads") && i + 1 < *argc) {
            long t;
            if (!cli_parse_long(argv[i + 1], 0, CLI_MAX_THREADS, &t))
                s->threads = (int)t;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    return 0;
}

int main(int argc, char **argv)
{
    int provided = 0, rank = 0, size = 1;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "clipn-mpi: MPI_Init_thread failed\n");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (provided < MPI_THREAD_SERIALIZED) {
        if (rank == 0)
            fprintf(stderr, "clipn-mpi: this MPI has no MPI_THREAD_SERIALIZED support\n");
        MPI_Finalize();
        return 1;
    }
    mpi_settings s = {.rank0_works = 1};
    int rc = take_options(&argc, argv, &s);
    int (*fn)(int, char **) = NULL;
    if (rc == 0 && argc >= 2) {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[1], commands[i].name))
                fn = commands[i].fn;
        if (!fn && rank == 0) {
            if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                usage(stdout);
            } else if (!strcmp(argv[1], "--version")) {
                printf("clipn-mpi %s\n", CLIPN_VERSION_STRING);
            } else {
                fprintf(stderr, "clipn-mpi: unknown or undistributed command '%s' (use clipn)\n",
                        argv[1]);
                usage(stderr);
                rc = 2;
            }
        }
    } else if (rc == 0) {
        if (rank == 0)
            usage(stderr);
        rc = 2;
    }
    if (!fn) { /* every rank saw the same argv and comes here */
        MPI_Finalize();
        return rc;
    }
    if (rank > 0) {
        rc = mpi_worker_main(rank);
        MPI_Finalize();
        return rc;
    }
    s.cmd = argv[1];
    mpi_backend_install(&s, size);
    if (s.state_dir && state_open(s.state_dir, s.cmd))
        rc = 1;
    else
        rc = fn(argc - 1, argv + 1);
    fflush(stdout);
    mpi_backend_finish();
    MPI_Finalize();
    return rc;
}
