#!/usr/bin/env python3
"""Peer engines on the same files as `lodestone bench`, printing the same JSON lines.

    python3 Benchmarks/peers.py flat --base B.fvecs --queries Q.fvecs --truth T.ivecs \
        --metric cosine --k 10 [--batch] [--threads N] [--limit-queries N]

    python3 Benchmarks/peers.py hnsw --base B --queries Q --truth T --metric cosine --k 10 \
        --m 16 --ef-construction 200 --ef 10,16,32,64,128,256 --threads 2 [--engines hnswlib,faiss,usearch]

hnsw: builds each engine on --threads threads with the same M/efConstruction
(degree 2*M for glass and SymphonyQG), then for each ef sends all queries in
one batch call on one thread (one call per query with --filter); prints one
JSON line per (engine, ef) with build time, resident memory added by the build
and the saved index's bytes per vector.

flat: faiss IndexFlatIP (cosine/dot; vectors normalised for cosine) or IndexFlatL2.
Without --batch one thread issues one query at a time (faiss set to 1 OpenMP
thread); with --batch all queries go in one call on --threads threads (best of
--repeats calls, as lodestone bench does).

Needs `pip install faiss-cpu hnswlib usearch numpy` (and pyglass-portable,
rabitqlib for --engines glass,symqg).
"""
import argparse, json, os, sys, time
import numpy as np


def read_matrix(path, dtype):
    if path.endswith(".npy"):
        return np.load(path).astype(dtype, copy=False)
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def recall(ids, truth, k):
    hits = sum(len(set(ids[i, :k].tolist()) & set(truth[i, :k].tolist())) for i in range(len(ids)))
    return hits / (len(ids) * k)


def load(args):
    """Base vectors, queries (cut to --limit-queries) and ground truth."""
    base = read_matrix(args.base, "<f4")
    queries = read_matrix(args.queries, "<f4")
    truth = read_matrix(args.truth, "<i4")
    if args.limit_queries:
        queries = queries[: args.limit_queries]
    return base, queries, truth


def flat(args):
    import faiss
    base, queries, truth = load(args)
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
    search = index.search
    if args.filter:
        # faiss's own filtered search: an IDSelectorBitmap in SearchParameters.
        mask = filter_mask(args.filter, args.metadata, n)
        bits = np.packbits(mask, bitorder="little")
        params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)))
        search = lambda q, k: index.search(q, k, params=params)
    lat = []
    if args.batch:
        faiss.omp_set_num_threads(args.threads)
        best = float("inf")
        for _ in range(max(1, args.repeats)):
            s = time.perf_counter()
            _, ids = search(queries, args.k)
            best = min(best, time.perf_counter() - s)
        elapsed = best
    else:
        faiss.omp_set_num_threads(1)
        for i in range(min(10, nq)):
            search(queries[i : i + 1], args.k)
        ids = np.empty((nq, args.k), dtype=np.int64)
        s = time.perf_counter()
        for i in range(nq):
            a = time.perf_counter()
            _, r = search(queries[i : i + 1], args.k)
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
        **({"filter": os.path.basename(args.filter), "filter_matches": int(mask.sum())} if args.filter else {}),
    }
    print(json.dumps(out))


OPEN_CHILD = r"""
import os, sys, time
engine, path, dim, metric = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if engine == "hnswlib":
    import hnswlib
    index = hnswlib.Index(space={"cosine": "ip", "dotproduct": "ip", "euclidean": "l2"}[metric], dim=dim)
    r0 = rss(); t0 = time.perf_counter()
    index.load_index(path)
elif engine == "faiss":
    import faiss
    r0 = rss(); t0 = time.perf_counter()
    index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
else:
    from usearch.index import Index
    r0 = rss(); t0 = time.perf_counter()
    index = Index.restore(path, view=True)
t1 = time.perf_counter()
print((t1 - t0) * 1000, (rss() - r0) / 1e6)
"""


def measure_open(engine, index, d, metric, directory):
    """Saves a peer's index and opens it in a fresh Python process: (ms, MB of resident memory added)."""
    import subprocess
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"peer-{engine}.index")
    if engine == "hnswlib":
        index.save_index(path)
    elif engine == "faiss":
        import faiss
        faiss.write_index(index, path)
    else:
        index.save(path)
    out = subprocess.run([sys.executable, "-c", OPEN_CHILD, engine, path, str(d), metric],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def pinecone_match(flt, meta):
    """Pinecone's filter semantics (the subset the benchmark filters use, and more)."""
    def cond(value, c):
        if not isinstance(c, dict):
            c = {"$eq": c}
        for op, arg in c.items():
            vals = value if isinstance(value, list) else [value]
            if op == "$eq": ok = value is not None and arg in vals
            elif op == "$ne": ok = value is None or arg not in vals
            elif op == "$in": ok = value is not None and any(a in vals for a in arg)
            elif op == "$nin": ok = value is None or all(a not in vals for a in arg)
            elif op == "$exists": ok = (value is not None) == arg
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and {
                    "$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
            else: raise SystemExit(f"unsupported operator {op}")
            if not ok: return False
        return True
    for key, c in flt.items():
        if key == "$and":
            if not all(pinecone_match(f, meta) for f in c): return False
        elif key == "$or":
            if not any(pinecone_match(f, meta) for f in c): return False
        elif not cond(meta.get(key), c):
            return False
    return True


def filter_mask(filter_path, metadata_path, n):
    with open(filter_path) as f:
        flt = json.load(f)
    if isinstance(flt.get("filter"), dict):
        flt = flt["filter"]
    mask = np.zeros(n, dtype=bool)
    with open(metadata_path) as f:
        for i, line in enumerate(f):
            if i >= n: break
            mask[i] = pinecone_match(flt, json.loads(line))
    return mask


def hnsw(args):
    """hnswlib, faiss IndexHNSWFlat and usearch with the same M / efConstruction."""
    import os
    base, queries, truth = load(args)
    n, d = base.shape
    nq = len(queries)
    efs = [int(x) for x in args.ef.split(",")]
    if args.metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    engines = [e.strip() for e in args.engines.split(",")]
    for engine in engines:
        r0 = rss()
        t0 = time.perf_counter()
        if engine == "hnswlib":
            import hnswlib
            space = {"cosine": "ip", "dotproduct": "ip", "euclidean": "l2"}[args.metric]
            index = hnswlib.Index(space=space, dim=d)
            index.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=42)
            index.set_num_threads(args.threads)
            index.add_items(base, np.arange(n))
            index.set_num_threads(1)
            def set_ef(ef): index.set_ef(ef)
            def one(q, k): return index.knn_query(q, k=k)[0][0]
            def batch(qs, k): return index.knn_query(qs, k=k, num_threads=1)[0]
            if args.filter:
                allowed = filter_mask(args.filter, args.metadata, n)
                check = lambda label: bool(allowed[label])
                def one(q, k):
                    # hnswlib's filter callback, applied during the search; it
                    # raises when it finds fewer than k matches.
                    try:
                        return index.knn_query(q, k=k, filter=check)[0][0]
                    except RuntimeError:
                        return []
            def disk_bytes():
                import tempfile
                with tempfile.NamedTemporaryFile(suffix=".bin") as f:
                    index.save_index(f.name); return os.path.getsize(f.name)
            version = getattr(hnswlib, "__version__", "?")
        elif engine == "faiss":
            import faiss
            faiss.omp_set_num_threads(args.threads)
            mt = faiss.METRIC_L2 if args.metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
            index = faiss.IndexHNSWFlat(d, args.m, mt)
            index.hnsw.efConstruction = args.ef_construction
            index.add(base)
            faiss.omp_set_num_threads(1)
            def set_ef(ef): index.hnsw.efSearch = ef
            def one(q, k): return index.search(q.reshape(1, -1), k)[1][0]
            def batch(qs, k): return index.search(qs, k)[1]
            def disk_bytes():
                return len(faiss.serialize_index(index))
            version = faiss.__version__
        elif engine == "usearch":
            from usearch.index import Index
            um = {"cosine": "ip", "dotproduct": "ip", "euclidean": "l2sq"}[args.metric]
            index = Index(ndim=d, metric=um, dtype="f32", connectivity=args.m,
                          expansion_add=args.ef_construction, expansion_search=64)
            index.add(np.arange(n), base, threads=args.threads)
            def set_ef(ef): index.expansion_search = ef
            def one(q, k): return index.search(q, k, threads=1).keys
            def batch(qs, k): return index.search(qs, k, threads=1).keys
            def disk_bytes():
                return len(index.save())
            import usearch
            version = usearch.__version__
        elif engine == "glass":
            # glass 2.x (pyglass-portable's AVX2 wheel): an HNSW built on SQ8U
            # distances, searched on SQ4U codes with an FP16 re-rank, its
            # prefetch tuned by optimize() on one thread (its README's recipe).
            import glass
            glass.set_num_threads(args.threads)
            gm = "L2" if args.metric == "euclidean" else "IP"
            graph = glass.Index("HNSW", metric=gm, quant="SQ8U", R=2 * args.m, L=args.ef_construction).build(base)
            index = glass.Searcher(graph=graph, data=base, metric=gm, quantizer="SQ4U", refine_quant="FP16")
            index.optimize(num_threads=1)
            def set_ef(ef): index.set_ef(ef)
            def batch(qs, k): return index.batch_search(qs, k, num_threads=1)[0]
            def disk_bytes():
                import tempfile
                with tempfile.TemporaryDirectory() as t:
                    graph.save(os.path.join(t, "g")); return os.path.getsize(os.path.join(t, "g"))
            version = "2.1 (pyglass-portable)"
        elif engine in ("symqg", "symqg4", "symqg8"):
            # SymphonyQG (rabitqlib): degree 2*M, the neighbours' 1-bit
            # RaBitQ codes, and for the final ranking raw vectors (symqg) or
            # 4- or 8-bit codes in their place (quantization_bits 4 or 8,
            # the settings that keep no float32); search_batch on one thread.
            from rabitqlib import SymqgIndex
            import importlib.metadata as md
            sm = "l2" if args.metric == "euclidean" else "ip"
            bits = {"symqg": 0, "symqg4": 4, "symqg8": 8}[engine]
            index = SymqgIndex(dim=d, max_degree=2 * args.m, metric=sm, quantization_bits=bits)
            index.build(base, ef_construction=args.ef_construction, num_threads=args.threads, init="pipnn")
            efbox = [64]
            def set_ef(ef): efbox[0] = ef
            def batch(qs, k): return index.search_batch(qs, k=k, ef=max(efbox[0], k), num_threads=1)[0]
            def disk_bytes():
                import tempfile
                with tempfile.TemporaryDirectory() as t:
                    index.save(os.path.join(t, "s")); return os.path.getsize(os.path.join(t, "s"))
            version = md.version("rabitqlib")
        else:
            raise SystemExit(f"unknown engine {engine}")
        build_s = time.perf_counter() - t0
        mem = rss() - r0
        size = disk_bytes()
        opened = measure_open(engine, index, d, args.metric, args.persist) if args.persist else None
        # Unfiltered queries go in one batch call on one thread, as the
        # engines' fastest users call them: a Python call per query costs
        # tens of microseconds, which would flatter Lodestone (bench is Swift,
        # one query at a time). Filtered ones (hnswlib's callback) stay one
        # call per query, since hnswlib raises for the whole batch when one
        # query finds fewer than k matches.
        per_query = bool(args.filter)
        for ef in efs:
            set_ef(ef)
            ids = np.full((nq, args.k), -1, dtype=np.int64)
            lat = []
            if per_query:
                for i in range(min(10, nq)):
                    one(queries[i], args.k)
                s = time.perf_counter()
                for i in range(nq):
                    a = time.perf_counter()
                    r = one(queries[i], args.k)
                    lat.append(time.perf_counter() - a)
                    ids[i, : len(r)] = r
                elapsed = time.perf_counter() - s
            else:
                batch(queries[: min(100, nq)], args.k)  # warm up
                elapsed = float("inf")
                for _ in range(max(1, args.repeats)):
                    s = time.perf_counter()
                    r = np.asarray(batch(queries, args.k))
                    elapsed = min(elapsed, time.perf_counter() - s)
                ids[:, : r.shape[1]] = r
            lat.sort()
            pct = lambda p: (lat[min(len(lat) - 1, max(0, int(np.ceil(p / 100 * len(lat))) - 1))] * 1e6
                             if lat else None)
            print(json.dumps({
                "index": engine, "metric": args.metric, "k": args.k, "n": n, "dim": d, "queries": nq,
                "recall": round(recall(ids, truth, args.k), 4), "qps": round(nq / elapsed, 1),
                "p50_us": pct(50) and round(pct(50), 1), "p99_us": pct(99) and round(pct(99), 1),
                "build_s": round(build_s, 4), "threads": args.threads, "batch": not per_query, "ef": ef, "m": args.m,
                "ef_construction": args.ef_construction, "memory_bytes": mem, "file_bytes": size,
                "bytes_per_vector": round(size / n, 1), "version": version,
                **({"filter": os.path.basename(args.filter), "short_results": int((ids[:, args.k - 1] < 0).sum())}
                   if args.filter else {}),
                **({"open_ms": round(opened[0], 3), "open_rss_mb": round(opened[1], 2)} if opened else {}),
            }), flush=True)
        del index


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
    f.add_argument("--filter", help="a filter file (as lodestone bench --filter), applied with faiss's IDSelectorBitmap; "
                   "point --truth at the filtered ground truth")
    f.add_argument("--metadata", help="with --filter: metadata JSON Lines in base order")
    h = sub.add_parser("hnsw")
    for name in ("--base", "--queries", "--truth"):
        h.add_argument(name, required=True)
    h.add_argument("--metric", default="cosine", choices=["cosine", "euclidean", "dotproduct"])
    h.add_argument("--k", type=int, default=10)
    h.add_argument("--m", type=int, default=16)
    h.add_argument("--ef-construction", type=int, default=200)
    h.add_argument("--ef", default="10,16,32,64,128,256")
    h.add_argument("--threads", type=int, default=2, help="build threads; queries run on one thread")
    h.add_argument("--engines", default="hnswlib,faiss,usearch",
                   help="any of hnswlib, faiss, usearch, glass (pip install pyglass-portable), "
                   "symqg, symqg4, symqg8 (SymphonyQG with float32, 4- or 8-bit re-ranking: pip install rabitqlib)")
    h.add_argument("--repeats", type=int, default=1,
                   help="batch calls per ef; the fastest is reported")
    h.add_argument("--limit-queries", type=int)
    h.add_argument("--persist", help="also save each index here and time opening it in a fresh process "
                   "(hnswlib load_index, faiss IO_FLAG_MMAP_IFC, usearch view)")
    h.add_argument("--json", action="store_true")
    h.add_argument("--filter", help="hnswlib only: a filter file (as lodestone bench --filter); the search uses "
                   "hnswlib's filter callback; point --truth at the filtered ground truth")
    h.add_argument("--metadata", help="with --filter: metadata JSON Lines in base order")
    args = p.parse_args()
    if args.mode == "flat":
        flat(args)
    else:
        hnsw(args)


if __name__ == "__main__":
    sys.exit(main())
