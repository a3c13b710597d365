#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (with AddressSanitizer) and runs each
# for SECONDS (default 30), two at a time. Corpora live in Fuzz/corpus/<target>
# (seeded by the targets themselves when empty); findings go to
# Fuzz/findings/. Prints one JSON line: targets, seconds, findings.
#   Scripts/fuzz.sh [SECONDS]
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
seconds="${1:-30}"
cd "$lodestone_root/Fuzz"
swift build -c release -Xswiftc -sanitize=fuzzer,address >&2
bin="$(swift build -c release -Xswiftc -sanitize=fuzzer,address --show-bin-path)"
targets=(FuzzSegmentOpen FuzzLogReplay FuzzManifest FuzzImportLine FuzzImportGzip FuzzFilter FuzzOperations)
mkdir -p findings
findings_before=$(ls findings | wc -l)
export SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0
run() {
    local t=$1
    mkdir -p "corpus/$t"
    "$bin/$t" "corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
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
