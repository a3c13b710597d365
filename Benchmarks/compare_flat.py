#!/usr/bin/env python3
"""Lodestone's flat index against faiss's, side by side, in one run.

    python3 Benchmarks/compare_flat.py [--data ../shared/data/pypi-minilm] [--rounds 3] [--threads 2]

Builds `lodestone` (release, no extra flags: what a library user gets), then
alternates Lodestone and faiss runs (`lodestone bench` and `peers.py flat`)
on the same files, `--rounds` times, in batch mode (all queries in one call,
`--threads` threads) and single-query mode (one thread, one query at a time),
and prints the median of each with Lodestone's ratio to faiss. It also runs
`lodestone bench-kernels`. The machine is shared and noisy: trust the ratios.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the environment of
these runs only (a stale core type slows sgemm several-fold); the table
prints the core OpenBLAS picked.
"""
import argparse, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone, run_json as run  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--single-queries", type=int, default=1000)
    a = p.parse_args()
    env = bench_env()
    exe = build_lodestone()
    files = ["--base", f"{a.data}/base.fvecs", "--queries", f"{a.data}/query.fvecs",
             "--truth", f"{a.data}/groundtruth.ivecs", "--metric", "cosine", "--k", "10"]
    modes = {
        "batch": ["--batch", "--threads", str(a.threads)],
        "single": ["--limit-queries", str(a.single_queries)],
    }
    results = {(eng, m): [] for eng in ("lodestone", "faiss") for m in modes}
    for r in range(a.rounds):
        for m, extra in modes.items():
            results[("lodestone", m)] += run([exe, "bench", *files, "--index", "flat", *extra, "--json"], env)
            results[("faiss", m)] += run([sys.executable, os.path.join(ROOT, "Benchmarks", "peers.py"), "flat",
                                          *files, *extra], env)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    kernels = run([exe, "bench-kernels", "--json"], env)

    med = lambda rows, key: statistics.median(x[key] for x in rows if x.get(key) is not None)
    lb = results[("lodestone", "batch")]
    print(f"\nflat search, pypi-minilm: {lb[0]['n']:,} x {lb[0]['dim']}, cosine, k=10; median of {a.rounds} rounds")
    print(f"kernels: {lb[0]['kernels']}, OpenBLAS core: {lb[0]['blas_core']}\n")
    print("| mode | engine | recall@10 | queries/s | p50 µs | p99 µs | Lodestone / faiss (qps) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for m in modes:
        lq, fq = med(results[("lodestone", m)], "qps"), med(results[("faiss", m)], "qps")
        for eng in ("lodestone", "faiss"):
            rows = results[(eng, m)]
            p50 = f"{med(rows, 'p50_us'):.0f}" if m == "single" else "-"
            p99 = f"{med(rows, 'p99_us'):.0f}" if m == "single" else "-"
            ratio = f"**{lq / fq:.2f}x**" if eng == "lodestone" else ""
            label = f"{m} ({a.threads} threads)" if m == "batch" else f"{m} (1 thread)"
            name = "Lodestone FlatIndex" if eng == "lodestone" else f"faiss {rows[0]['index'].split('.')[-1]}"
            print(f"| {label} | {name} | {med(rows, 'recall'):.4f} | {med(rows, 'qps'):,.0f} | {p50} | {p99} | {ratio} |")
    gemm = med(lb, "gemm_gflops_per_thread"); sg = med(lb, "sgemm_gflops_1t")
    print(f"\nbatch GEMM stage: {gemm:.1f} GFLOP/s per thread = {gemm / sg:.2f} of cblas_sgemm 2048³ "
          f"({sg:.1f} GFLOP/s, 1 thread, same run); exact fallbacks: {sum(x['exact_fallbacks'] for x in lb)}")
    ls = results[("lodestone", "single")]
    print(f"single-query scan: {med(ls, 'scan_gbps'):.1f} GB/s of vectors\n")
    print("| kernel (d=384, 64 cache-resident rows) | GB/s | vs portable |")
    print("| --- | ---: | ---: |")
    for k in kernels:
        if k["kernel"] in ("dot_rows", "dot"):
            tag = " (active)" if k["active"] else ""
            print(f"| {k['isa']}{tag} {k['kernel']} | {k['gbps']:.1f} | {k['vs_portable']:.2f}x |")


if __name__ == "__main__":
    main()
