#!/usr/bin/env python3
"""Lodestone's HNSW index against hnswlib, faiss HNSWFlat, glass and SymphonyQG, in one run.

    python3 Benchmarks/compare_hnsw.py [--data ../shared/data/pypi-minilm] [--rounds 2] [--threads 2] \
        [--engines hnswlib,faiss,glass,symqg,symqg4,symqg8] [--traversals exact,quantized,compact] [--plot out.png]

Every engine builds the same base vectors with the same M and efConstruction
(degree 2*M for glass and SymphonyQG) on --threads threads, then answers the
queries on one thread for each ef of a sweep:
- Lodestone through `lodestone bench`, one query at a time from Swift, once
  per graph traversal in --traversals (exact: float32 distances for every
  neighbour; quantized: the neighbours' 1-bit codes, float32 for the nodes
  the walk expands; compact: one 4-bit code per node, float32 for the
  finalists only);
- every peer in one batch call on one thread, as its fastest users call it
  (a Python call per query costs tens of microseconds and would flatter us).
Each engine answers the queries --repeats times per ef and reports its
fastest pass (a shared machine's hiccups only slow a pass down). Engines
alternate within each round; the tables report medians over rounds,
and for each recall target the queries/s at the smallest ef whose recall@10
reaches it (no interpolation), with ratios to every peer. The machine is
shared and noisy: read the ratios. --plot draws every engine's recall/qps
curve (matplotlib).

Needs `pip install hnswlib faiss-cpu pyglass-portable rabitqlib numpy matplotlib`.
"""
import argparse, collections, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone, run_json as run  # noqa: E402

EFS = "10,16,20,24,28,32,36,40,48,56,64,72,80,96,112,128,144,160,192,224,256,320,400"
NAMES = {"lodestone-exact": "Lodestone (exact walk)", "lodestone-quantized": "Lodestone (quantized walk)",
         "lodestone-compact": "Lodestone (compact walk)",
         "hnswlib": "hnswlib", "faiss": "faiss HNSWFlat", "usearch": "usearch",
         "glass": "glass (SQ4U + FP16 refine)", "symqg": "SymphonyQG (rabitqlib)",
         "symqg4": "SymphonyQG, 4-bit re-rank", "symqg8": "SymphonyQG, 8-bit re-rank"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--prefix", default="", help="file name prefix in --data (small_ for the 10k slice)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default=EFS)
    p.add_argument("--repeats", type=int, default=5,
                   help="passes over the queries per ef, every engine alike; the fastest is reported")
    p.add_argument("--engines", default="hnswlib,faiss,glass,symqg,symqg4,symqg8")
    p.add_argument("--traversals", default="exact,quantized,compact", help="Lodestone's graph traversals to run")
    p.add_argument("--plot", help="write the recall/queries-per-second curves to this PNG")
    p.add_argument("--save", help="also write every JSON line to this file")
    p.add_argument("--replay", help="print the tables (and --plot) from a file --save wrote, running nothing; "
                                    "pass the run's --engines, --traversals, --ef and --rounds")
    a = p.parse_args()
    if a.replay:
        rows = collections.defaultdict(list)
        for text in open(a.replay):
            line = json.loads(text)
            rows[(line.pop("engine"), line["ef"])].append(line)
        a.rounds = 0
    env = bench_env()
    exe = None if a.replay else build_lodestone()
    d, pre = a.data, a.prefix
    query = f"{d}/{pre}query.fvecs" if os.path.exists(f"{d}/{pre}query.fvecs") else f"{d}/query.fvecs"
    files = ["--base", f"{d}/{pre}base.fvecs", "--queries", query,
             "--truth", f"{d}/{pre}groundtruth.ivecs", "--metric", "cosine", "--k", "10"]
    common = ["--m", str(a.m), "--ef-construction", str(a.ef_construction), "--ef", a.ef, "--threads", str(a.threads),
              "--repeats", str(a.repeats)]
    if not a.replay:
        rows = collections.defaultdict(list)  # (engine, ef) -> [json]
    traversals = [t.strip() for t in a.traversals.split(",") if t.strip()]
    peers = [e.strip() for e in a.engines.split(",") if e.strip()]
    saved = open(a.save, "w") if a.save else None
    for r in range(a.rounds):
        for t in traversals:
            persist = ["--persist", f"/tmp/lodestone-compare-hnsw-{t}"] if r == 0 else []
            for line in run([exe, "bench", *files, "--index", "hnsw", "--traversal", t, *common, *persist, "--json"], env):
                rows[(f"lodestone-{t}", line["ef"])].append(line)
                if saved: saved.write(json.dumps({"engine": f"lodestone-{t}", **line}) + "\n")
        for engine in peers:
            for line in run([sys.executable, os.path.join(ROOT, "Benchmarks", "peers.py"), "hnsw", *files, *common,
                             "--engines", engine], env):
                rows[(engine, line["ef"])].append(line)
                if saved: saved.write(json.dumps({"engine": engine, **line}) + "\n")
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    med = lambda xs, key: statistics.median(x[key] for x in xs)
    engines = [f"lodestone-{t}" for t in traversals] + peers
    ours = engines[: len(traversals)]
    efs = [int(x) for x in a.ef.split(",")]
    any_line = rows[(engines[0], efs[0])][0]
    # The quantized walk's neighbour-code kernels are chosen on their own.
    quantized = rows.get(("lodestone-quantized", efs[0]))
    codes = f" (neighbour codes: {quantized[0]['neighbour_code_kernels']})" if quantized and \
        "neighbour_code_kernels" in quantized[0] else ""
    print(f"\nHNSW, {os.path.basename(os.path.normpath(d))} {pre}{any_line['n']:,} x {any_line['dim']}, cosine, k=10, "
          f"M={a.m}, efConstruction={a.ef_construction}, build on {a.threads} threads, queries on 1 thread "
          f"(Lodestone one at a time, peers one batch call); fastest of {a.repeats} passes, median of {a.rounds} rounds; "
          f"kernels: {any_line.get('kernels', '?')}{codes}\n")
    for target in (0.90, 0.95, 0.99):
        print(f"recall@10 ≥ {target:.2f}:\n")
        print("| engine | ef | recall@10 | queries/s | " + " | ".join(f"{NAMES[o]} / engine" for o in ours) + " |")
        print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in ours) + " |")
        best = {}
        for e in engines:
            for ef in efs:
                xs = rows.get((e, ef))
                if xs and med(xs, "recall") >= target:
                    best[e] = (ef, xs)
                    break
        for e in engines:
            if e not in best:
                print(f"| {NAMES[e]} | - | not reached | - | " + " | ".join("-" for _ in ours) + " |")
                continue
            ef, xs = best[e]
            ratios = [f"{med(best[o][1], 'qps') / med(xs, 'qps'):.2f}x" if o in best and o != e else ""
                      for o in ours]
            print(f"| {NAMES[e]} | {ef} | {med(xs, 'recall'):.4f} | {med(xs, 'qps'):,.0f} | " + " | ".join(ratios) + " |")
        print()
    print("build and memory:\n")
    print("| engine | build s | bytes per vector resident | bytes per vector searches read | file bytes per vector | open ms (fresh process) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for e in engines:
        xs = rows[(e, efs[0])]
        n = xs[0]["n"]
        saved = [x for x in xs if x.get("file_bytes")]
        file_b = f"{saved[0]['file_bytes'] / n:,.0f}" if saved else "-"
        opened = f"{saved[0]['open_ms']:.1f}" if saved and "open_ms" in saved[0] else "-"
        read = xs[0].get("resident_bytes_per_vector", med(xs, "memory_bytes") / n)
        print(f"| {NAMES[e]} | {med(xs, 'build_s'):.1f} | {med(xs, 'memory_bytes') / n:,.0f} | {read:,.0f} | {file_b} | {opened} |")
    print("\nResident bytes: Lodestone's allocated arenas (vectors, links, codes, keys, levels) after its build,")
    print("the resident memory each peer's build added. Bytes searches read: what must stay in memory to serve")
    print("at full speed (Lodestone's describe figure: the compact walk reads float32 vectors for its finalists")
    print("only, from the mapped segment; a peer reads all it holds). Lodestone's file and open time: the first")
    print("round's segment, opened by a fresh process (mapped; the reopened index's recall and q/s are in --save).")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for e in engines:
            pts = [(med(rows[(e, ef)], "recall"), med(rows[(e, ef)], "qps")) for ef in efs if rows.get((e, ef))]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=3,
                    linewidth=2.2 if e.startswith("lodestone") else 1.2, label=NAMES[e])
        ax.set_yscale("log")
        ax.set_xlim(left=0.8)
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s, one thread (log)")
        ax.set_title(f"{os.path.basename(os.path.normpath(d))} {pre}{any_line['n']:,} x {any_line['dim']}, "
                     f"M={a.m}, efConstruction={a.ef_construction}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"\nwrote {a.plot}")


if __name__ == "__main__":
    main()
