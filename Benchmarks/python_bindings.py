#!/usr/bin/env python3
"""Lodestone from Python against Lodestone from Swift, and against hnswlib and
faiss called from Python the same way, in one run.

    python3 Benchmarks/python_bindings.py [--data ../shared/data/pypi-minilm] [--rounds 3]

Needs the lodestone package (pip install ./Python), hnswlib, faiss-cpu and numpy.

1. Per-call floor: one query against an index holding one vector (the
   engine's work is a single 384-d dot product), so the time per call is
   what the binding costs: lodestone, hnswlib and faiss from Python.
2. Single queries on the 100k HNSW graph, one thread, one call per query:
   the same persisted segment searched by `lodestone bench-open` (Swift, in
   its own process), by the C function called from Python with buffers
   made beforehand, and by the Python package's `search`; the package's
   overhead is its time minus the C call's, measured back to back in one
   process. Engines are compared with one batch call on one thread each
   (Lodestone, hnswlib's knn_query, faiss's search), never one Python call
   per query. Rounds alternate; medians reported.
3. Two Python threads issuing single queries against one: the calls
   release the GIL, so two threads should run about twice as many.
4. Batches: one call with every query, 2 threads: the Python package
   against `lodestone bench-open --batch` (HNSW) and `lodestone bench
   --batch` (flat, BLAS), and hnswlib's knn_query / faiss's search with
   the same thread count.
All peers are built with the same M/efConstruction on 2 threads and called
without per-query Python overhead where a batch is measured.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, bench_env, build_lodestone  # noqa: E402


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def recall(ids, truth, k=10):
    return float(np.mean([len(set(ids[i, :k].tolist()) & set(truth[i, :k].tolist())) / k for i in range(len(ids))]))


def per_call(fn, qs, repeats):
    """Median over `repeats` passes of the mean seconds per call."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for q in qs:
            fn(q)
        times.append((time.perf_counter() - t) / len(qs))
    return statistics.median(times)


def best_of(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ef", default="32,64,128")
    args = p.parse_args()
    os.environ.pop("OPENBLAS_CORETYPE", None)
    import faiss, hnswlib, lodestone

    cli = build_lodestone()
    env = bench_env()
    base = read_vecs(os.path.join(args.data, "base.fvecs"), "<f4")
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), "<f4")
    truth = read_vecs(os.path.join(args.data, "groundtruth.ivecs"), "<i4")
    n, d = base.shape
    out = {"n": n, "dim": d, "queries": len(queries), "threads": args.threads, "lodestone": lodestone.library_info()}

    # 1. The per-call floor (best of 7 passes of 20,000 calls: the floor is
    # a minimum, and the machine is shared), with Lodestone's split into the
    # C call itself (Swift's work plus cffi) and a call that does nothing.
    q = queries[0].copy()
    one = base[:1]
    lf = lodestone.FlatIndex(d, "cosine"); lf.add([0], one)
    hl = hnswlib.Index(space="ip", dim=d); hl.init_index(max_elements=1, M=16, ef_construction=200); hl.add_items(one, [0])
    hl.set_num_threads(1)
    ff = faiss.IndexFlatIP(d); ff.add(one)
    faiss.omp_set_num_threads(1)
    from lodestone import _native
    ffi, lib = _native.load()
    keys, scores = np.empty(1, np.uint64), np.empty(1, np.float32)
    # The raw C calls hold the wrappers' handles for the whole run.
    flat_ptr = lf._handle.__enter__()
    raw = (flat_ptr, ffi.from_buffer("float[]", q), 1, 1, 0, 1, ffi.from_buffer("uint64_t[]", keys),
           ffi.from_buffer("float[]", scores), ffi.new("int32_t[1]"), ffi.new("lds_error **"))

    def floor_of(fn, n=20000, passes=7):
        best = float("inf")
        for _ in range(passes):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t) / n)
        return round(best * 1e6, 2)

    q2 = q.reshape(1, -1)
    out["floor_us"] = {
        "lodestone": floor_of(lambda: lf.search(q, 1)),
        "lodestone_c_call": floor_of(lambda: lib.lds_vindex_search(*raw)),
        "empty_c_call": floor_of(lambda: lib.lds_vindex_count(flat_ptr)),
        "hnswlib": floor_of(lambda: hl.knn_query(q, k=1)),
        "faiss": floor_of(lambda: ff.search(q2, 1)),
    }
    print(json.dumps({"floor_us": out["floor_us"]}), flush=True)

    # Builds, 2 threads each.
    t = time.perf_counter()
    lh = lodestone.HNSWIndex(d, "cosine", m=16, ef_construction=200)
    lh.add(np.arange(n), base, threads=args.threads)
    out["build_s"] = {"lodestone": round(time.perf_counter() - t, 1)}
    work = tempfile.mkdtemp(prefix="lodestone-pybench-")
    segment = os.path.join(work, "hnsw.lodestone")
    lh.persist(segment)
    lh.close()
    opened = lodestone.open_index(segment)
    t = time.perf_counter()
    hh = hnswlib.Index(space="cosine", dim=d); hh.init_index(max_elements=n, M=16, ef_construction=200)
    hh.add_items(base, np.arange(n), num_threads=args.threads)
    out["build_s"]["hnswlib"] = round(time.perf_counter() - t, 1)
    faiss.omp_set_num_threads(args.threads)
    nb = base / np.linalg.norm(base, axis=1, keepdims=True)
    nq = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = time.perf_counter()
    fh = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT); fh.hnsw.efConstruction = 200; fh.add(nb)
    out["build_s"]["faiss"] = round(time.perf_counter() - t, 1)
    print(json.dumps({"build_s": out["build_s"]}), flush=True)

    # 2. Single queries, one thread; 3. batches. The rows are split once,
    # outside the timed loops, for every engine alike.
    qrows = list(queries)
    out_keys, out_scores = np.empty(10, np.uint64), np.empty(10, np.float32)
    kb, sb = ffi.from_buffer("uint64_t[]", out_keys), ffi.from_buffer("float[]", out_scores)
    cb, eb = ffi.new("int32_t[1]"), ffi.new("lds_error **")
    qbufs = [ffi.from_buffer("float[]", q) for q in qrows]

    opened_ptr = opened._handle.__enter__()

    def raw_calls(ef):
        return [(opened_ptr, qb, 1, 10, ef, 1, kb, sb, cb, eb) for qb in qbufs]

    rows = []
    for ef in [int(e) for e in args.ef.split(",")]:
        r = {"ef": ef, "swift_us": [], "c_call_us": [], "python_us": [],
             "python_batch1_qps": [], "hnswlib_batch1_qps": [], "faiss_batch1_qps": [],
             "swift_batch_qps": [], "python_batch_qps": [], "hnswlib_batch_qps": [], "faiss_batch_qps": []}
        hh.set_ef(ef)
        fh.hnsw.efSearch = ef
        for _ in range(args.rounds):
            line = json.loads(subprocess.run(
                [cli, "bench-open", "--segment", segment, "--queries", os.path.join(args.data, "query.fvecs"),
                 "--truth", os.path.join(args.data, "groundtruth.ivecs"), "--ef", str(ef), "--batch",
                 "--threads", str(args.threads)], check=True, capture_output=True, text=True, env=env).stdout)
            r["swift_us"].append(1e6 / line["reopened_qps"])
            r["swift_batch_qps"].append(line["batch_qps"])
            hh.set_num_threads(1); faiss.omp_set_num_threads(1)
            # The same queries through the C function with buffers made
            # beforehand (what the Python layer adds is the difference).
            r["c_call_us"].append(per_call(lambda c: lib.lds_vindex_search(*c), raw_calls(ef), 1) * 1e6)
            r["python_us"].append(per_call(lambda q: opened.search(q, 10, ef=ef), qrows, 1) * 1e6)
            # Engines against each other: one batch call on one thread each
            # (no Python per query), as their fastest users call them.
            r["python_batch1_qps"].append(len(queries) / best_of(lambda: opened.search(queries, 10, ef=ef, threads=1)))
            r["hnswlib_batch1_qps"].append(len(queries) / best_of(lambda: hh.knn_query(queries, k=10, num_threads=1)))
            r["faiss_batch1_qps"].append(len(queries) / best_of(lambda: fh.search(nq, 10)))
            hh.set_num_threads(args.threads); faiss.omp_set_num_threads(args.threads)
            r["python_batch_qps"].append(len(queries) / best_of(lambda: opened.search(queries, 10, ef=ef, threads=args.threads)))
            r["hnswlib_batch_qps"].append(len(queries) / best_of(lambda: hh.knn_query(queries, k=10, num_threads=args.threads)))
            r["faiss_batch_qps"].append(len(queries) / best_of(lambda: fh.search(nq, 10)))
        r = {k: (round(statistics.median(v), 1) if isinstance(v, list) else v) for k, v in r.items()}
        r["recall"] = {"lodestone": round(recall(opened.search(queries, 10, ef=ef, threads=2)[0].astype(np.int64), truth), 4),
                       "hnswlib": round(recall(hh.knn_query(queries, k=10)[0].astype(np.int64), truth), 4),
                       "faiss": round(recall(fh.search(nq, 10)[1], truth), 4)}
        r["overhead_us"] = round(r["python_us"] - r["c_call_us"], 2)
        r["python_batch_vs_swift"] = round(r["python_batch_qps"] / r["swift_batch_qps"], 3)
        print(json.dumps(r), flush=True)
        rows.append(r)
    out["hnsw"] = rows

    # The GIL: single-query calls from 1 and from 2 Python threads (ef 64).
    import threading

    def run_threads(n):
        parts = [qrows[i::n] for i in range(n)]
        workers = [threading.Thread(target=lambda p=p: [opened.search(q, 10, ef=64) for q in p]) for p in parts]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return len(qrows) / (time.perf_counter() - t)

    gil = {"one_thread_qps": [], "two_threads_qps": []}
    for _ in range(args.rounds):
        gil["one_thread_qps"].append(run_threads(1))
        gil["two_threads_qps"].append(run_threads(2))
    gil = {k: round(statistics.median(v), 1) for k, v in gil.items()}
    gil["speedup"] = round(gil["two_threads_qps"] / gil["one_thread_qps"], 2)
    print(json.dumps({"python_threads": gil}), flush=True)
    out["python_threads"] = gil

    # Flat batches (BLAS): Python against the CLI, and faiss.
    lflat = lodestone.FlatIndex(d, "cosine"); lflat.add(np.arange(n), base)
    flat = {"python_qps": [], "swift_qps": [], "faiss_qps": []}
    ffl = faiss.IndexFlatIP(d); ffl.add(nb)
    for _ in range(args.rounds):
        line = [json.loads(l) for l in subprocess.run(
            [cli, "bench", "--base", os.path.join(args.data, "base.fvecs"), "--queries", os.path.join(args.data, "query.fvecs"),
             "--truth", os.path.join(args.data, "groundtruth.ivecs"), "--index", "flat", "--batch", "--threads",
             str(args.threads), "--json"], check=True, capture_output=True, text=True, env=env).stdout.splitlines()
            if l.startswith("{")][-1]
        flat["swift_qps"].append(line["qps"])
        flat["python_qps"].append(len(queries) / best_of(lambda: lflat.search(queries, 10, threads=args.threads)))
        faiss.omp_set_num_threads(args.threads)
        flat["faiss_qps"].append(len(queries) / best_of(lambda: ffl.search(nq, 10)))
    flat = {k: round(statistics.median(v), 1) for k, v in flat.items()}
    flat["python_vs_swift"] = round(flat["python_qps"] / flat["swift_qps"], 3)
    print(json.dumps({"flat_batch": flat}), flush=True)
    out["flat_batch"] = flat
    print(json.dumps(out))


if __name__ == "__main__":
    main()
