/* clipn-mpi internals: the distributed cli_backend (mpi_map.c), the --state directory
 * (mpi_state.c) and the byte buffers their messages and files are made of. */
#ifndef CLIPN_MPI_MAP_H
#define CLIPN_MPI_MAP_H

#include "cli_backend.h"

#include <stdint.h>

/* ---- byte buffers: what goes over MPI and into state files (native byte order) */

typedef struct mbuf {
    char *p;
    size_t n, cap;
    int oom;
} mbuf;

void mbuf_put(mbuf *b, const void *data, size_t len);
void mbuf_i64(mbuf *b, int64_t v);
void mbuf_str(mbuf *b, const char *s); /* with its NUL */
void mbuf_free(mbuf *b);

/* A reader over received bytes; any read past the end or a string without its NUL sets
 * bad and returns zeros / "". */
typedef struct mread {
    const char *p;
    size_t n, off;
    int bad;
} mread;

int64_t mread_i64(mread *r);
const char *mread_str(mread *r);
const void *mread_bytes(mread *r, size_t len);

/* ---- clipn-mpi settings (from its own options, see mpi_main.c) */

typedef struct mpi_settings {
    const char *cmd;       /* the subcommand */
    const char *state_dir; /* --state DIR or NULL */
    long chunk;            /* --chunk N, 0 = per kind default */
    long timeout;          /* --timeout S: seconds a rank may hold a chunk, 0 = no limit */
    int threads;           /* the subcommand's --threads (0 = all cores of each rank) */
    int rank0_works;       /* rank 0 also takes chunks (--no-rank0-work turns it off) */
} mpi_settings;

/* Rank 0: make cli_backend_active the distributed backend. */
void mpi_backend_install(const mpi_settings *s, int n_ranks);
/* Rank 0, after the subcommand returned: tell every worker to stop. */
void mpi_backend_finish(void);
/* Ranks > 0: serve chunks until rank 0 says stop. Returns the exit status. */
int mpi_worker_main(int rank);

/* ---- the --state directory (rank 0 only; messages printed as "clipn-mpi: ...") */

/* Open (creating) DIR for subcommand cmd; refuses a directory made by another one. 0 or 1. */
int state_open(const char *dir, const char *cmd);
/* The seq-th job of this run has key and n_chunks; refuses other inputs than last time. */
int state_job(int seq, const char *kind, uint64_t key, size_t n_chunks);
/* Marks have[c] = 1 for every chunk recorded for key; returns how many. */
size_t state_scan(uint64_t key, size_t n_chunks, unsigned char *have);
/* Chunk result bytes; 0 ok, 1 missing or damaged (then it is redone). */
int state_load(uint64_t key, size_t chunk, mbuf *out);
/* Written to a temp file and renamed: 0 or 1 (printed). */
int state_save(uint64_t key, size_t chunk, const void *data, size_t len);

uint64_t fnv1a(uint64_t h, const void *data, size_t len);
#define FNV_OFFSET 0xcbf29ce484222325ull

#endif
