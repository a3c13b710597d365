#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (with AddressSanitizer) and runs each
# for SECONDS (default 30), two at a time, starting from the committed corpus
# in Fuzz/seeds/<target> (which `swift test` replays) and the working corpus
# in Fuzz/corpus/<target> (gitignored, seeded by the targets when empty; new
# inputs go there). Findings go to Fuzz/findings/. Prints one JSON line:
# targets, seconds, findings. To refresh the committed corpus after a long
# run: Scripts/fuzz.sh --minimise-seeds (merges both into a minimal set).
#   Scripts/fuzz.sh [SECONDS]
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
seconds="${1:-30}"
minimise=0
[ "$seconds" = "--minimise-seeds" ] && { minimise=1; seconds=0; }
cd "$lodestone_root/Fuzz"
swift build -c release -Xswiftc -sanitize=fuzzer,address >&2
bin="$(swift build -c release -Xswiftc -sanitize=fuzzer,address --show-bin-path)"
targets=(FuzzSegmentOpen FuzzLogReplay FuzzManifest FuzzImportLine FuzzImportGzip FuzzFilter FuzzOperations)
if [ "$minimise" = 1 ]; then
    export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0
    for t in "${targets[@]}"; do
        rm -rf "seeds/$t.new" && mkdir -p "seeds/$t.new" "seeds/$t" "corpus/$t"
        "$bin/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 "seeds/$t.new" "seeds/$t" "corpus/$t" > "/tmp/merge-$t.log" 2>&1
        rm -rf "seeds/$t" && mv "seeds/$t.new" "seeds/$t"
        echo "$t: $(ls "seeds/$t" | wc -l) inputs" >&2
    done
    exit 0
fi
mkdir -p findings
findings_before=$(ls findings | wc -l)
export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0
run() {
    local t=$1
    mkdir -p "corpus/$t"
    "$bin/$t" "corpus/$t" "seeds/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=65536 -artifact_prefix="findings/$t-" -print_final_stats=1 > "findings/.$t.log" 2>&1
    echo "$t exit $? $(grep -E 'stat::number_of_executed_units' "findings/.$t.log" | awk '{print $2}') runs" >&2
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[$i]}" &
    [ $((i + 1)) -lt ${#targets[@]} ] && run "${targets[$((i + 1))]}" &
    wait
done
findings=$(( $(ls findings | wc -l) - findings_before ))
echo "{\"fuzz_targets\": ${#targets[@]}, \"fuzz_seconds_per_target\": $seconds, \"fuzz_findings\": $findings}"
