#include "cli.h"

int cmd_preprocess(int argc, char **argv)
{
    (void)argc;
    return cli_fail(argv[0], "not implemented yet");
}
