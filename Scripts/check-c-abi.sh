#!/usr/bin/env bash
# The C ABI (libLodestoneC.so): builds it as the wheel ships it (release,
# the Swift runtime linked in, in .build-dist, where Scripts/build-dist and
# `pip install ./Python` find it built), checks that the library exports
# exactly the lds_ functions lodestone.h declares, then compiles
# Tests/CABI/smoke.c against the header with -Wall -Wextra -Werror and runs it.
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
swift build -c release --product LodestoneC -Xswiftc -static-stdlib --scratch-path .build-dist
libdir=.build-dist/release
lib=$libdir/libLodestoneC.so
header=Sources/LodestoneCAPI/lodestone.h
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^lds_/ {print $3}' | sort)
declared=$(grep -oE '\blds_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
if [ "$exported" != "$declared" ]; then
    echo "error: the library's exports differ from lodestone.h (< exported, > declared):" >&2
    diff <(echo "$exported") <(echo "$declared") >&2 || true
    exit 1
fi
echo "exports: $(echo "$exported" | wc -l) lds_ functions, matching lodestone.h"
out=$(mktemp -d)
gcc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -ISources/LodestoneCAPI Tests/CABI/smoke.c \
    -L$libdir -lLodestoneC -Wl,-rpath,"$PWD/$libdir" -lm -o "$out/smoke"
SWIFT_BACKTRACE=enable=no "$out/smoke"
rm -rf "$out"
