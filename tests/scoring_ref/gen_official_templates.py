"""Regenerate examples/cli/official_templates.c from data/clipn_templates_official.txt.
    /usr/bin/python3 tests/scoring_ref/gen_official_templates.py data/clipn_templates_official.txt
Python text mode turns CRLF into LF before the official code strips "\n", so CR goes too."""
import json
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "data/clipn_templates_official.txt"
lines = [l for l in open(src, newline="").read().splitlines() if l]
assert all(l.isascii() for l in lines)  # then JSON string escaping is valid C
out = ["/* GENERATED from data/clipn_templates_official.txt (the official CLIPN src/prompt/prompt.txt,",
       " * lines verbatim, quote marks kept, CRLF removed as Python text mode does). Regenerate with",
       " * tests/scoring_ref/gen_official_templates.py. */",
       '#include "official_templates.h"', "",
       "const char *const clipn_official_templates[] = {"]
out += ["    %s," % json.dumps(l) for l in lines]
out += ["};", "const int clipn_n_official_templates = %d;" % len(lines), ""]
open("examples/cli/official_templates.c", "w").write("\n".join(out))
