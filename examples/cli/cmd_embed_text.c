#include "cli.h"

int cmd_embed_text(int argc, char **argv)
{
    (void)argc;
    return cli_fail(argv[0], "not implemented yet");
}
