"""Regenerate lib/ood/official_templates.c (behind clipn_official_templates()) from
data/clipn_templates_official.txt (the official CLIPN src/prompt/prompt.txt) and
data/clipn_templates_no_handcrafted.txt (the hand-crafted "no" templates):
    /usr/bin/python3 tests/scoring_ref/gen_official_templates.py
Python text mode turns CRLF into LF before the official code strips "\n", so CR goes too."""
import json

tables = [("official_yes", "data/clipn_templates_official.txt"),
          ("no_handcrafted", "data/clipn_templates_no_handcrafted.txt")]
out = ["/* GENERATED from data/clipn_templates_official.txt (the official CLIPN src/prompt/prompt.txt)",
       " * and data/clipn_templates_no_handcrafted.txt: lines verbatim, quote marks kept, CRLF",
       " * removed as Python text mode does. Regenerate with tests/scoring_ref/gen_official_templates.py. */",
       '#include "internal.h"', ""]
for name, src in tables:
    lines = [l for l in open(src, newline="").read().splitlines() if l]
    assert all(l.isascii() for l in lines)  # then JSON string escaping is valid C
    out += ["static const char *const %s[] = {" % name]
    out += ["    %s," % json.dumps(l) for l in lines]
    out += ["};", ""]
out += ["int clipn_official_templates(clipn_template_set which, const char *const **templates)",
        "{",
        "    const char *const *t = NULL;",
        "    int n = 0;",
        "    if (which == CLIPN_TEMPLATES_OFFICIAL) {",
        "        t = official_yes;",
        "        n = (int)(sizeof official_yes / sizeof official_yes[0]);",
        "    } else if (which == CLIPN_TEMPLATES_NO_HANDCRAFTED) {",
        "        t = no_handcrafted;",
        "        n = (int)(sizeof no_handcrafted / sizeof no_handcrafted[0]);",
        "    }",
        "    if (templates)",
        "        *templates = t;",
        "    return n;",
        "}", ""]
open("lib/ood/official_templates.c", "w").write("\n".join(out))
