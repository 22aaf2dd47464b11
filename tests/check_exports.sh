#!/bin/sh
# check_exports.sh LIBCLIPN_SO HEADER: the shared library exports exactly the functions the
# public header declares, and every function the header declares carries CLIPN_API.
# (The library is built with -fvisibility=hidden; CLIPN_API marks the exports.)
set -eu
so=${1:?usage: check_exports.sh libclipn.so include/clipn.h}
hdr=${2:?usage: check_exports.sh libclipn.so include/clipn.h}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# a declaration starts a line: [const] type [*] clipn_name(
unmarked=$(grep -E '^(const |unsigned )?[a-z_0-9]+[ *]+clipn_[a-z0-9_]+\(' "$hdr" || true)
if [ -n "$unmarked" ]; then
    echo "check_exports: declared in $hdr without CLIPN_API:"; echo "$unmarked"; exit 1
fi
grep -E '^CLIPN_API ' "$hdr" | sed -E 's/\(.*//; s/.*[ *]//' | sort -u > "$tmp/header"
nm -D --defined-only "$so" | awk '{ print $NF }' | sort -u > "$tmp/exported"
if ! cmp -s "$tmp/header" "$tmp/exported"; then
    echo "check_exports: $so exports differ from the CLIPN_API functions of $hdr"
    echo "(< only in the header, > only in the library)"
    diff "$tmp/header" "$tmp/exported" | grep '^[<>]' || true
    exit 1
fi
echo "check_exports: $(wc -l < "$tmp/exported") symbols, exactly the CLIPN_API functions of $hdr"
