#!/usr/bin/env python3
"""Lodestone's HNSW index against hnswlib, faiss IndexHNSWFlat and usearch, in one run.

    python3 Benchmarks/compare_hnsw.py [--data ../shared/data/pypi-minilm] [--rounds 2] [--threads 2]

Every engine builds the same base vectors with the same M and efConstruction on
--threads threads, then one thread issues one query at a time for each ef of a
fine sweep. Engines alternate within each round; the table reports medians
over rounds, and for each recall target the queries/s at the smallest ef whose
recall@10 reaches it (no interpolation), with Lodestone's ratio to each peer.
The machine is shared and noisy: read the ratios.

Needs `pip install hnswlib faiss-cpu usearch numpy`.
"""
import argparse, collections, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone, run_json as run  # noqa: E402

EFS = "10,16,24,32,40,48,56,64,80,96,128,160,192,256"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default=EFS)
    p.add_argument("--engines", default="hnswlib,faiss,usearch")
    a = p.parse_args()
    env = bench_env()
    exe = build_lodestone()
    files = ["--base", f"{a.data}/base.fvecs", "--queries", f"{a.data}/query.fvecs",
             "--truth", f"{a.data}/groundtruth.ivecs", "--metric", "cosine", "--k", "10"]
    common = ["--m", str(a.m), "--ef-construction", str(a.ef_construction), "--ef", a.ef, "--threads", str(a.threads)]
    rows = collections.defaultdict(list)  # (engine, ef) -> [json]
    peers = [e.strip() for e in a.engines.split(",") if e.strip()]
    for r in range(a.rounds):
        for line in run([exe, "bench", *files, "--index", "hnsw", *common, "--json"], env):
            rows[("lodestone", line["ef"])].append(line)
        for engine in peers:
            for line in run([sys.executable, os.path.join(ROOT, "Benchmarks", "peers.py"), "hnsw", *files, *common,
                             "--engines", engine], env):
                rows[(engine, line["ef"])].append(line)
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    med = lambda xs, key: statistics.median(x[key] for x in xs)
    engines = ["lodestone"] + peers
    efs = [int(x) for x in a.ef.split(",")]
    any_line = rows[("lodestone", efs[0])][0]
    print(f"\nHNSW, pypi-minilm {any_line['n']:,} x {any_line['dim']}, cosine, k=10, M={a.m}, "
          f"efConstruction={a.ef_construction}, build on {a.threads} threads, queries on 1 thread one at a time; "
          f"median of {a.rounds} rounds; kernels: {any_line['kernels']}\n")
    names = {"lodestone": "Lodestone", "hnswlib": "hnswlib", "faiss": "faiss HNSWFlat", "usearch": "usearch"}
    for target in (0.90, 0.95, 0.99):
        print(f"recall@10 ≥ {target:.2f}:\n")
        print("| engine | ef | recall@10 | queries/s | p50 µs | p99 µs | Lodestone / engine |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        best = {}
        for e in engines:
            for ef in efs:
                xs = rows.get((e, ef))
                if xs and med(xs, "recall") >= target:
                    best[e] = (ef, xs)
                    break
        for e in engines:
            if e not in best:
                print(f"| {names[e]} | - | not reached | - | - | - | - |")
                continue
            ef, xs = best[e]
            ratio = ""
            if e != "lodestone" and "lodestone" in best:
                ratio = f"**{med(best['lodestone'][1], 'qps') / med(xs, 'qps'):.2f}x**"
            print(f"| {names[e]} | {ef} | {med(xs, 'recall'):.4f} | {med(xs, 'qps'):,.0f} | {med(xs, 'p50_us'):.0f} | "
                  f"{med(xs, 'p99_us'):.0f} | {ratio} |")
        print()
    print("build and memory:\n")
    print("| engine | build s | Lodestone / engine (build time) | bytes per vector | in-memory bytes per vector |")
    print("| --- | ---: | ---: | ---: | ---: |")
    lb = med(rows[("lodestone", efs[0])], "build_s")
    for e in engines:
        xs = rows[(e, efs[0])]
        n = xs[0]["n"]
        file_b = f"{med(xs, 'file_bytes') / n:,.1f} (file)" if "file_bytes" in xs[0] else "-"
        mem_b = f"{med(xs, 'memory_bytes') / n:,.1f}"
        if e == "lodestone":
            file_b = "-"
        ratio = "" if e == "lodestone" else f"{lb / med(xs, 'build_s'):.2f}"
        print(f"| {names[e]} | {med(xs, 'build_s'):.1f} | {ratio} | {file_b} | {mem_b} |")
    print("\nrecall@10 at equal ef (Lodestone minus hnswlib):\n")
    if "hnswlib" in engines:
        print("| ef | Lodestone | hnswlib | difference |")
        print("| ---: | ---: | ---: | ---: |")
        for ef in efs:
            l, h = med(rows[("lodestone", ef)], "recall"), med(rows[("hnswlib", ef)], "recall")
            print(f"| {ef} | {l:.4f} | {h:.4f} | {l - h:+.4f} |")


if __name__ == "__main__":
    main()
