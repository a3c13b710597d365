#!/usr/bin/env bash
# Fails if a build log holds a compiler warning in the project's own code
# (Sources/, Tests/, Tools/, Examples/, Benchmarks/, Fuzz/; dependencies'
# checkouts excluded). Every target builds in the Swift 6 language mode with
# complete concurrency checking (swift-tools-version 6.x), so a data-race
# diagnostic is among them. CI tees the logs of a fresh clone's first builds
# (which compile everything) through this.
#   Scripts/check-warnings.sh build.log [more.log ...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
found="$(grep -hE "^${root}/(Sources|Tests|Tools|Examples|Benchmarks|Fuzz)/[^:]+:[0-9]+:[0-9]+: warning:" "$@" \
    | grep -v "/\.build[^/]*/" | sort -u || true)"
if [ -n "$found" ]; then
    echo "$found"
    echo "error: $(echo "$found" | wc -l) compiler warning(s) in the project's code (see above)" >&2
    exit 1
fi
echo "no compiler warnings in the project's code ($# build log(s) read)"
