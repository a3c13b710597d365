#!/usr/bin/env python3
"""Peer engines on the same files as `lodestone bench`, printing the same JSON lines.

    python3 Benchmarks/peers.py flat --base B.fvecs --queries Q.fvecs --truth T.ivecs \
        --metric cosine --k 10 [--batch] [--threads N] [--limit-queries N]

flat: faiss IndexFlatIP (cosine/dot; vectors normalised for cosine) or IndexFlatL2.
Without --batch one thread issues one query at a time (faiss set to 1 OpenMP
thread); with --batch all queries go in one call on --threads threads (best of
--repeats calls, as lodestone bench does).

Needs `pip install faiss-cpu numpy`.
"""
import argparse, json, sys, time
import numpy as np


def read_matrix(path, dtype):
    if path.endswith(".npy"):
        return np.load(path).astype(dtype, copy=False)
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def recall(ids, truth, k):
    hits = sum(len(set(ids[i, :k].tolist()) & set(truth[i, :k].tolist())) for i in range(len(ids)))
    return hits / (len(ids) * k)


def flat(args):
    import faiss
    base = read_matrix(args.base, "<f4")
    queries = read_matrix(args.queries, "<f4")
    truth = read_matrix(args.truth, "<i4")
    if args.limit_queries:
        queries = queries[: args.limit_queries]
    n, d = base.shape
    nq = len(queries)
    t0 = time.perf_counter()
    if args.metric == "euclidean":
        index = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexFlatIP(d)
    if args.metric == "cosine":
        base = base.copy(); faiss.normalize_L2(base)
        queries = queries.copy(); faiss.normalize_L2(queries)
    index.add(base)
    build_s = time.perf_counter() - t0
    lat = []
    if args.batch:
        faiss.omp_set_num_threads(args.threads)
        best = float("inf")
        for _ in range(max(1, args.repeats)):
            s = time.perf_counter()
            _, ids = index.search(queries, args.k)
            best = min(best, time.perf_counter() - s)
        elapsed = best
    else:
        faiss.omp_set_num_threads(1)
        for i in range(min(10, nq)):
            index.search(queries[i : i + 1], args.k)
        ids = np.empty((nq, args.k), dtype=np.int64)
        s = time.perf_counter()
        for i in range(nq):
            a = time.perf_counter()
            _, r = index.search(queries[i : i + 1], args.k)
            lat.append(time.perf_counter() - a)
            ids[i] = r[0]
        elapsed = time.perf_counter() - s
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, max(0, int(np.ceil(p / 100 * len(lat))) - 1))] * 1e6 if lat else None
    out = {
        "index": "faiss." + type(index).__name__, "metric": args.metric, "k": args.k, "n": n, "dim": d,
        "queries": nq, "recall": round(recall(ids, truth, args.k), 4), "qps": round(nq / elapsed, 1),
        "p50_us": pct(50), "p99_us": pct(99), "build_s": round(build_s, 4),
        "threads": args.threads if args.batch else 1, "batch": bool(args.batch),
        "scan_gbps": round(n * d * 4 * nq / elapsed / 1e9, 2), "faiss": faiss.__version__,
    }
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("flat")
    for name in ("--base", "--queries", "--truth"):
        f.add_argument(name, required=True)
    f.add_argument("--metric", default="cosine", choices=["cosine", "euclidean", "dotproduct"])
    f.add_argument("--k", type=int, default=10)
    f.add_argument("--batch", action="store_true")
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--repeats", type=int, default=3)
    f.add_argument("--limit-queries", type=int)
    f.add_argument("--json", action="store_true", help="accepted for symmetry with lodestone bench; output is always JSON")
    args = p.parse_args()
    if args.mode == "flat":
        flat(args)


if __name__ == "__main__":
    sys.exit(main())
