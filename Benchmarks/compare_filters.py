#!/usr/bin/env python3
"""Filtered HNSW search at every selectivity: Lodestone against hnswlib's filter
callback and faiss's IDSelectorBitmap on HNSW, in one run.

    python3 Scripts/make_filters.py                       # once: filters and their exact ground truth
    python3 Benchmarks/compare_filters.py [--data ../shared/data/pypi-minilm] [--filters Benchmarks/filters]

Lodestone: one `lodestone bench` run (one build, then the unfiltered sweep
and each filter's, one query at a time on one thread). Peers: each engine is
built once with the same M/efConstruction on --threads threads, then each
filter is searched as one batch call on one thread (no Python per query;
hnswlib's filter is a Python callable it calls per candidate, which is how
its users filter). For each filter the table gives the most queries/s any
ef of the sweep reaches at recall@10 >= the target, and its ratio to the
same engine's unfiltered queries/s at that recall.

Needs `pip install hnswlib faiss-cpu numpy`.

    python3 Benchmarks/compare_filters.py --against [--traversal compact]

runs instead each filter against the query (`Benchmarks/filters/against`,
made by Scripts/make_filters.py: the 200 queries whose nearest records pass
it least), Lodestone only, each beside the unfiltered sweep of the same 200
queries.
"""
import argparse, glob, json, os, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone, run_json  # noqa: E402
from peers import filter_mask, read_matrix, recall  # noqa: E402

EFS = "10,16,24,32,48,64,96,128,192,256,384"


def at_target(rows, target):
    """The fastest row (over the ef sweep) whose recall reaches target, or None."""
    ok = [r for r in rows if r["recall"] >= target]
    return max(ok, key=lambda r: r["qps"]) if ok else None


def peers(args, base, queries, specs, truths):
    """(engine, filter name, ef) -> {recall, qps} for hnswlib and faiss, batch calls on one thread."""
    import faiss, hnswlib
    n, d = base.shape
    nb = base / np.linalg.norm(base, axis=1, keepdims=True)
    nq = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    nb, nq = np.ascontiguousarray(nb, np.float32), np.ascontiguousarray(nq, np.float32)
    out = []
    h = hnswlib.Index(space="ip", dim=d)
    h.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=42)
    h.add_items(nb, np.arange(n), num_threads=args.threads)
    faiss.omp_set_num_threads(args.threads)
    f = faiss.IndexHNSWFlat(d, args.m, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = args.ef_construction
    f.add(nb)
    faiss.omp_set_num_threads(1)
    efs = [int(e) for e in args.peer_ef.split(",")]
    for name, spec in specs:
        truth = truths[name]
        mask = None if spec is None else filter_mask(spec, os.path.join(args.data, "base_meta.jsonl"), n)
        for ef in efs:
            h.set_ef(max(ef, 10))
            check = None if mask is None else (lambda label: bool(mask[label]))
            t = time.perf_counter()
            try:
                ids = h.knn_query(nq, k=10, num_threads=1, filter=check)[0].astype(np.int64)
            except RuntimeError:  # fewer than k matches found for some query
                ids = np.full((len(nq), 10), -1)
                for i, q in enumerate(nq):
                    try:
                        ids[i] = h.knn_query(q, k=10, num_threads=1, filter=check)[0][0]
                    except RuntimeError:
                        pass
            out.append({"engine": "hnswlib", "filter": name, "ef": ef, "qps": len(nq) / (time.perf_counter() - t),
                        "recall": recall(ids, truth, 10)})
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            if mask is not None:
                bits = np.packbits(mask.astype(np.uint8), bitorder="little")
                params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            t = time.perf_counter()
            _, ids = f.search(nq, 10, params=params)
            out.append({"engine": "faiss", "filter": name, "ef": ef, "qps": len(nq) / (time.perf_counter() - t),
                        "recall": recall(ids, truth, 10)})
            print(json.dumps(out[-2]), json.dumps(out[-1]), flush=True)
    return out


def lodestone_command(args, queries, truth, filters):
    """`lodestone bench` over the data with these queries, their unfiltered truth and the filter files."""
    cmd = [build_lodestone(), "bench", "--base", os.path.join(args.data, "base.fvecs"), "--queries", queries,
           "--truth", truth, "--metadata", os.path.join(args.data, "base_meta.jsonl"), "--index", "hnsw",
           "--m", str(args.m), "--ef-construction", str(args.ef_construction), "--traversal", args.traversal,
           "--threads", str(args.threads), "--ef", args.ef, "--limit-queries", str(args.limit_queries), "--json",
           "--filter", "none"]
    for f in filters:
        cmd += ["--filter", f]
    return cmd + ["--filter-truth-dir", args.truth_dir]


def against(args):
    """Each filter on the queries whose nearest records pass it least, beside their unfiltered sweep."""
    files = sorted(glob.glob(os.path.join(args.filters, "against", "*.json")))
    if not files:
        sys.exit("no filters against the query: run Scripts/make_filters.py first")
    print(f"recall@10 >= {args.target}: queries/s (plan, ef) on each filter's own 200 queries, and the ratio "
          f"to the unfiltered queries/s on the same queries\n")
    print("| filter | matches | of the nearest 100, passing | unfiltered q/s | filtered q/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for f in files:
        spec = json.load(open(f))
        lines = run_json(lodestone_command(args, os.path.join(args.truth_dir, spec["queries"]),
                                           os.path.join(args.truth_dir, spec["truth"]), [f]), bench_env())
        base_best = at_target([l for l in lines if l["filter"] == "none"], args.target)
        best = at_target([l for l in lines if l["filter"] == spec["name"]], args.target)
        cells = [f"{base_best['qps']:,.0f}" if base_best else "never",
                 f"{best['qps']:,.0f} ({best.get('plan', '')}, ef {best['ef']})" if best else "never",
                 f"{best['qps'] / base_best['qps']:.2f}x" if best and base_best else ""]
        print(f"| {spec['name']} | {spec['selectivity']:.1%} | {spec['nearest_passing']:.1%} | "
              + " | ".join(cells) + " |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--filters", default=os.path.join(ROOT, "Benchmarks", "filters"))
    p.add_argument("--truth-dir", default=os.path.join(ROOT, "bench-out", "filters"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--ef", default=EFS)
    p.add_argument("--traversal", default="exact", choices=["exact", "quantized", "compact"],
                   help="Lodestone's layer-0 walk (the peers are unchanged)")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--peers", default="hnswlib,faiss", help="'' to skip the peers")
    p.add_argument("--limit-queries", type=int, default=1000)
    p.add_argument("--peer-queries", type=int, default=200,
                   help="queries for the peers (hnswlib's Python filter callback is slow at low selectivity)")
    p.add_argument("--peer-ef", default="16,32,64,128,256")
    p.add_argument("--against", action="store_true",
                   help="run the filters against the query (Benchmarks/filters/against), Lodestone only")
    args = p.parse_args()
    if args.against:
        return against(args)
    files = sorted(glob.glob(os.path.join(args.filters, "*.json")))
    files += [os.path.join(args.data, f"filter_{n}.json") for n in ("popular", "recent", "y2019_long")]
    cmd = lodestone_command(args, os.path.join(args.data, "query.fvecs"),
                            os.path.join(args.data, "groundtruth.ivecs"), files)
    lines = run_json(cmd, bench_env())
    for l in lines:
        print(json.dumps(l), flush=True)
    rows = {}
    for l in lines:
        rows.setdefault(("lodestone", l["filter"]), []).append(l)
    if args.peers:
        base = read_matrix(os.path.join(args.data, "base.fvecs"), "<f4")
        queries = read_matrix(os.path.join(args.data, "query.fvecs"), "<f4")[: args.peer_queries]
        specs, truths = [("none", None)], {"none": read_matrix(os.path.join(args.data, "groundtruth.ivecs"), "<i4")}
        for f in files:
            spec = json.load(open(f))
            specs.append((spec["name"], f))
            tdir = args.data if f.startswith(args.data) else args.truth_dir
            truths[spec["name"]] = read_matrix(os.path.join(tdir, spec["groundtruth"]), "<i4")
        for r in peers(args, base, queries, specs, truths):
            rows.setdefault((r["engine"], r["filter"]), []).append(r)
    names = ["none"] + [json.load(open(f))["name"] for f in files]
    sel = {json.load(open(f))["name"]: json.load(open(f))["selectivity"] for f in files}
    engines = ["lodestone"] + [e for e in args.peers.split(",") if e]
    print(f"\nrecall@10 >= {args.target}: queries/s (plan, ef) and ratio to the engine's unfiltered queries/s\n")
    print("| filter | matches | " + " | ".join(f"{e} q/s | {e} / unfiltered" for e in engines) + " |")
    print("| --- | ---: | " + " | ".join("---: | ---:" for _ in engines) + " |")
    for name in names:
        cells = []
        for e in engines:
            best = at_target(rows.get((e, name), []), args.target)
            base_best = at_target(rows.get((e, "none"), []), args.target)
            if best is None:
                cells += ["never", ""]
                continue
            plan = f" ({best.get('plan', '')}, ef {best['ef']})" if e == "lodestone" else f" (ef {best['ef']})"
            ratio = best["qps"] / base_best["qps"] if base_best else float("nan")
            cells += [f"{best['qps']:,.0f}{plan}", f"{ratio:.2f}x"]
        share = "100%" if name == "none" else f"{sel[name]:.2%}"
        print(f"| {name} | {share} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
