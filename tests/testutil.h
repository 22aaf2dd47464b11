/* Shared helpers for the Check suites. Each tests/test_<module>.c defines
 * `Suite *make_suite(void)` and includes this header once, which provides main(). */
#ifndef CLIPN_TESTUTIL_H
#define CLIPN_TESTUTIL_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "clipn.h"

/* Paths are relative to the repository root (make test runs from there). */
#define FIXTURE(name) "tests/fixtures/" name

/* Directory for scratch files: $TMPDIR, else /tmp. `make test-c` gives each run a fresh
 * one and fails if a test leaves anything behind in it. */
static inline const char *test_tmp_dir(void)
{
    const char *d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

Suite *make_suite(void);

int main(void)
{
    SRunner *sr = srunner_create(make_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
