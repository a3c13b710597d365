#!/usr/bin/env bash
# The reliability suite: kill points (deterministic and random), simulated
# power cuts, every storage operation failed in turn (ENOSPC/EIO), hostile
# files, the bad-input matrix, a soak, fuzzing, and the concurrency tests
# under ThreadSanitizer and the corruption
# tests under AddressSanitizer. Writes reliability-report.json at the
# repository root and prints it as a table. CI runs it; exits 1 if any
# failure column is non-zero.
#
#   Scripts/reliability.sh            # the CI set (about 11 minutes on 2 cores, builds included)
#   Scripts/reliability.sh --quick    # no sanitizers or fuzzing; fewer kill points and hostile files
#   Scripts/reliability.sh --long     # nightly: 3 workload seeds for kill points and failed
#                                     # operations, 1,000 random kills, 20,000 hostile files,
#                                     # fuzzing 10 minutes per target, a 30-minute soak
#
# Scratch goes to /dev/shm when it exists (fsync on tmpfs is free).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

quick=0 long=0
[ "${1:-}" = "--quick" ] && quick=1
[ "${1:-}" = "--long" ] && long=1
seeds=(1)
[ $long = 1 ] && seeds=(1 2 3)
scratch=/tmp
[ -d /dev/shm ] && scratch=/dev/shm
out="$lodestone_root/reliability-report.json"
# Each step's heading carries the clock, so a slow step shows in CI's log.
step() { echo "== $* ($(date +%T), ${SECONDS}s in) ==" >&2; }
log="$(mktemp -d)"
status=0

step "release build"
lodestone_build_tools --product lodestone-stress >&2
bin="$lodestone_root/Tools/.build/release/lodestone-stress"

step "kill points"
if [ $quick = 1 ]; then kill_args=(--limit 60 --random 20); elif [ $long = 1 ]; then kill_args=(--random 1000); else kill_args=(--random 100); fi
for seed in "${seeds[@]}"; do
    "$bin" reliability-kill --work "$scratch/lodestone-kill-$$" --seed "$seed" "${kill_args[@]}" >> "$log/kill.jsonl" 2>> "$log/kill.err" \
        || { status=1; echo "kill points (seed $seed): failed" >&2; }
done
cat "$log/kill.jsonl" >&2; head -20 "$log/kill.err" >&2

step "failed operations (ENOSPC/EIO at every operation)"
if [ $quick = 1 ]; then fail_args=(--limit 60); else fail_args=(); fi
for seed in "${seeds[@]}"; do
    "$bin" reliability-fail --work "$scratch/lodestone-fail-$$" --seed "$seed" "${fail_args[@]}" >> "$log/fail.jsonl" 2>> "$log/fail.err" \
        || { status=1; echo "failed operations (seed $seed): failed" >&2; }
done
cat "$log/fail.jsonl" >&2; head -20 "$log/fail.err" >&2

step "hostile files"
if [ $quick = 1 ]; then hostile_args=(--count 1000 --no-exhaustive); elif [ $long = 1 ]; then hostile_args=(--count 20000); else hostile_args=(--count 5000); fi
"$bin" reliability-hostile --work "$scratch/lodestone-hostile-$$" "${hostile_args[@]}" > "$log/hostile.json" 2> "$log/hostile.err" || { status=1; echo "hostile files: failed" >&2; }
cat "$log/hostile.json" >&2; head -20 "$log/hostile.err" >&2

step "simulated power cuts"
"$bin" reliability-power --work "$scratch/lodestone-power-$$" > "$log/power.json" 2> "$log/power.err" || { status=1; echo "power cuts: failed" >&2; }
cat "$log/power.json" >&2; head -20 "$log/power.err" >&2

step "bad input"
"$bin" reliability-bad-input --work "$scratch/lodestone-bad-$$" > "$log/bad.json" 2> "$log/bad.err" || { status=1; echo "bad input: failed" >&2; }
cat "$log/bad.json" >&2; head -20 "$log/bad.err" >&2

step "soak"
if [ $quick = 1 ]; then soak_seconds=20; elif [ $long = 1 ]; then soak_seconds=1800; else soak_seconds=45; fi
"$bin" reliability-soak --work "$scratch/lodestone-soak-$$" --seconds "$soak_seconds" > "$log/soak.json" 2> "$log/soak.err" || { status=1; echo "soak: failed" >&2; }
cat "$log/soak.json" >&2; head -5 "$log/soak.err" >&2

tsan=null asan=null
if [ $quick = 0 ]; then
    # CI's budget: 10 s a target (CI's whole run must stay under 40 minutes);
    # --long runs each for 10 minutes, Scripts/fuzz.sh SECONDS any length.
    fuzz_seconds=${LODESTONE_FUZZ_SECONDS:-10}
    [ $long = 1 ] && fuzz_seconds=600
    step "fuzzing: 7 libFuzzer targets x $fuzz_seconds s (Fuzz/, ASan)"
    Scripts/fuzz.sh "$fuzz_seconds" > "$log/fuzz.json" 2> "$log/fuzz.err" || { status=1; echo "fuzzing: failed" >&2; tail -20 "$log/fuzz.err" >&2; }
    grep -E "exit|fuzz_targets" "$log/fuzz.err" "$log/fuzz.json" >&2 || true

    # Both sanitizer runs use the 2,000-vector sample in Data/ (races and
    # memory errors need no bigger index; the instrumented tests ran 2.5
    # minutes each on the 10,000-vector slice) and -O2 C kernels, as
    # Scripts/test does.
    step "ThreadSanitizer: concurrency tests"
    # The root package is the library alone (no server, no packages to
    # instrument).
    LODESTONE_SHARED_DATA=none swift test -Xcc -O2 --scratch-path .build-tsan --sanitize=thread --filter "concurrent|Concurrent" > "$log/tsan.log" 2>&1 \
        || { status=1; echo "ThreadSanitizer run: failed" >&2; grep -E "✘|error:|ERROR|SUMMARY" "$log/tsan.log" | head -20 >&2 || true; }
    tail -3 "$log/tsan.log" >&2
    tsan=$(grep -c "WARNING: ThreadSanitizer" "$log/tsan.log" || true)

    step "AddressSanitizer: corruption, bad input and API tests"
    # Not the wall-clock SIGKILL crash tests: their kill timing is flaky under
    # sanitizers (the kill-point suite above covers crashes deterministically).
    LSAN_OPTIONS="suppressions=$lodestone_root/.ci/lsan.supp" LODESTONE_SHARED_DATA=none \
        swift test -Xcc -O2 --scratch-path .build-asan --sanitize=address \
        --filter "SegmentTests|IndexAPITests|TransferTests|FilterTests|VectorFilesTests|DurableIndexTests/(reopen|tornTail|manifest|groupCommit)" > "$log/asan.log" 2>&1 \
        || { status=1; echo "AddressSanitizer run: failed" >&2; grep -E "✘|error:|ERROR|SUMMARY" "$log/asan.log" | head -30 >&2 || true; }
    grep -E "Test run with" "$log/asan.log" >&2 || true
    asan=$(grep -c "ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$log/asan.log" || true)
fi

python3 - "$log" "$out" "$tsan" "$asan" <<'EOF'
import json, sys
log, out, tsan, asan = sys.argv[1:]
def load(name):
    try:
        return json.loads(open(f"{log}/{name}.json").read().strip().splitlines()[-1])
    except Exception:
        return {}
def load_sum(name):
    """One JSON line per workload seed: numbers summed."""
    total = {}
    try:
        lines = open(f"{log}/{name}.jsonl").read().strip().splitlines()
    except Exception:
        return total
    for line in lines:
        for k, v in json.loads(line).items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total
hostile, bad, power, fuzz, soak = (load(n) for n in ["hostile", "bad", "power", "fuzz", "soak"])
kill, fail = load_sum("kill"), load_sum("fail")
def num(v):
    return None if v == "null" else int(v)
report = {
    "kill_points_deterministic": kill.get("kill_points_deterministic"),
    "kill_points_torn_writes": kill.get("kill_points_torn_writes"),
    "kill_points_random": kill.get("kill_points_random"),
    "kill_points_survived": kill.get("kill_points_survived"),
    "kill_points_failed": kill.get("kill_points_failed"),
    "io_operations_in_workload": kill.get("io_operations"),
    "failed_operations": fail.get("failed_operations"),
    "failed_operations_recovered_by_retry": fail.get("failed_recovered_by_retry"),
    "failed_operations_refused_typed": fail.get("failed_refused_typed"),
    "failed_operations_not_surfaced": fail.get("failed_not_surfaced"),
    "failed_operations_given_up_then_reopened": fail.get("failed_given_up_then_reopened"),
    "failed_operation_violations": fail.get("failed_operation_violations"),
    "power_cuts": power.get("power_cuts"),
    "power_cut_violations": power.get("power_cut_violations"),
    "power_cuts_sector_model": power.get("cuts_sector"),
    "hostile_files": hostile.get("hostile_files"),
    "hostile_truncations_exhaustive": hostile.get("hostile_truncations_exhaustive"),
    "hostile_typed": hostile.get("hostile_typed"),
    "hostile_identical": hostile.get("hostile_identical"),
    "hostile_crashes": hostile.get("hostile_crashes"),
    "hostile_hangs": hostile.get("hostile_hangs"),
    "hostile_silent_divergences": hostile.get("hostile_silent_divergences"),
    "bad_input_cases": bad.get("bad_input_cases"),
    "bad_input_failures": bad.get("bad_input_failures"),
    "fuzz_targets": fuzz.get("fuzz_targets"),
    "fuzz_seconds_per_target": fuzz.get("fuzz_seconds_per_target"),
    "fuzz_findings": fuzz.get("fuzz_findings"),
    "tsan_reports": num(tsan),
    "asan_reports": num(asan),
    "soak_seconds": soak.get("soak_seconds"),
    "soak_rss_slope_mib_per_min": soak.get("soak_rss_slope_mib_per_min"),
    "soak_ops_per_s": soak.get("soak_ops_per_s"),
    "soak_open_files": soak.get("soak_open_files"),
    "soak_mappings": soak.get("soak_mappings"),
}
open(out, "w").write(json.dumps(report, indent=2) + "\n")
width = max(len(k) for k in report)
for k, v in report.items():
    print(f"{k.ljust(width)}  {'-' if v is None else v}")
EOF

failed=$(python3 -c "import json;r=json.load(open('$out'));print(sum((r.get(k) or 0) for k in ['kill_points_failed','failed_operation_violations','power_cut_violations','fuzz_findings','hostile_crashes','hostile_hangs','hostile_silent_divergences','bad_input_failures','tsan_reports','asan_reports']))")
rm -rf "$log"
if [ "$status" != 0 ] || [ "$failed" != 0 ]; then
    echo "reliability: FAILED ($failed failures)" >&2
    exit 1
fi
echo "reliability: all passed" >&2
