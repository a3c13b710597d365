#!/usr/bin/env python3
"""Sparse (BM25) top-k search on one thread: scipy, Seismic and (later) Lodestone.

    python3 compare_sparse.py --dir DIR --k 10 [--rounds 3] [--json out.json]

DIR is what make_bm25.py wrote (base.spvecs, query.spvecs, vocab.txt,
groundtruth.ivecs, groundtruth_scores.fvecs). Engines, all on one thread
(OMP/BLAS/Rayon thread counts are set to 1 before any import):

- scipy single: the base as a CSR matrix transposed (vocab x docs, i.e. an
  inverted index); per query one sparse row-vector x matrix product (touches
  only the query terms' posting lists), then the top-k by np.partition (ties
  to the lower row, as in the ground truth). float32.
- scipy batch: all queries as one CSR matrix times base.T, then per-row top-k:
  the way its fastest users call it (one call for all the queries). On the
  full set that one product materialises every candidate score at once (44M)
  and is slowed by that memory, not by the arithmetic: scipy batch/64 does
  the same 64 queries a call.
- Seismic (pip package pyseismic-lsr): SeismicDataset(LV).add_documents_by_id
  with the term ids as component ids ("42" addresses term 42 in queries), then
  SeismicIndex(LV).build_from_dataset for each build setting in SEISMIC_BUILDS
  (the LV classes take component ids above 65,535), and batch_search with
  num_threads=1 for each (query_cut, heap_factor) in SEISMIC_SEARCHES.
- Lodestone: `lodestone bench-sparse` (a sparse index, one batch call of
  exact queries on one thread; LODESTONE_BIN names the binary, else
  Tools/.build/release/lodestone), skipped when the binary is missing.

Each round runs every engine once, in turn (so machine noise hits them
alike); queries/s is the median over --rounds rounds, a round's figure being
the wall time of passes over all the queries, repeated until --min-seconds
have passed (query vectors prepared beforehand, results converted to row
numbers afterwards). The timed calls' CPU time is checked
against their wall time, to catch a library that starts threads anyway.

recall@k: |returned ∩ true top-k| / k, where the true top-k drops the -1 pads
(docs with score 0 are not results) and the divisor is then the number of
true results; queries without any are left out. BM25 scores tie often
(same term, same document length): `recall_ties` also counts a returned
document whose exact score equals the k-th true score (relative 1e-6), so
the two differ only by which tied documents an engine picked.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"  # Seismic's num_threads=1 alone still runs Rayon's global pool (0.5.4)

import argparse, contextlib, datetime, importlib.metadata, json, platform, statistics, sys, time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

BATCH_CHUNK = 64
SEISMIC_BUILDS = [
    {"n_postings": 1000, "centroid_fraction": 0.1, "summary_energy": 0.4, "max_fraction": 1.5},
    {"n_postings": 2000, "centroid_fraction": 0.1, "summary_energy": 0.5, "max_fraction": 1.5},
    {"n_postings": 4000, "centroid_fraction": 0.2, "summary_energy": 0.5, "max_fraction": 1.5},
]
SEISMIC_SEARCHES = [(qc, hf) for qc in (5, 10, 30) for hf in (0.7, 0.9, 1.0)]
# query_cut 30 >= the longest query (29 terms): every term is used.


LODESTONE = os.environ.get("LODESTONE_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tools", ".build", "release", "lodestone")


def run_lodestone(dir, k, min_seconds):
    """Lodestone's sparse index through `lodestone bench-sparse` (one batch
    call on one thread, the fastest of passes over the queries for
    `min_seconds`): a dict with "name", "params", "build_s", "seconds" (one
    pass over all of query.spvecs) and "ids" (queries x k base rows, -1 pads);
    None when the binary is missing."""
    if not os.path.exists(LODESTONE):
        print(f"Lodestone skipped: no {LODESTONE} (swift build -c release --package-path Tools)", file=sys.stderr)
        return None
    import subprocess, tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ids.ivecs")
        line = subprocess.run([LODESTONE, "bench-sparse", "--base", os.path.join(dir, "base.spvecs"),
                               "--queries", os.path.join(dir, "query.spvecs"), "--k", str(k), "--threads", "1",
                               "--min-seconds", str(min_seconds), "--ids-out", out, "--json"],
                              check=True, capture_output=True, text=True).stdout
        result = json.loads(line)
        ids = read_vecs(out, np.int32).astype(np.int64)
    return {"name": "Lodestone (exact)", "params": {"index": "sparse", "threads": 1},
            "build_s": result["build_s"], "seconds": result["seconds"], "ids": ids}


def read_spvecs(path):
    """A .spvecs file as CSR arrays: (indptr, term ids int64, values float32)."""
    raw = np.fromfile(path, dtype="<i4")
    starts, nnz = [], []
    o = 0
    while o < len(raw):
        starts.append(o + 1)
        nnz.append(int(raw[o]))
        o += 1 + 2 * nnz[-1]
    indptr = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    ids = np.concatenate([raw[s:s + n] for s, n in zip(starts, nnz)])
    vals = np.concatenate([raw[s + n:s + 2 * n] for s, n in zip(starts, nnz)])
    return indptr, ids.astype(np.int64), vals.view("<f4").astype(np.float32)


def read_vecs(path, dtype):
    """A TEXMEX .ivecs/.fvecs file as a (rows, dim) array of `dtype`."""
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def topk(indices, scores, k):
    """The `k` best columns of one sparse result row, best first, ties to the
    lower column (the k-th score by partition, then a sort of what reaches it)."""
    if len(scores) > k:
        keep = scores >= np.partition(scores, len(scores) - k)[len(scores) - k]
        indices, scores = indices[keep], scores[keep]
    return indices[np.lexsort((indices, -scores))][:k]


def scipy_single(queries, base_t, k):
    """One (1 x vocab) @ (vocab x docs) sparse product per query."""
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for i, q in enumerate(queries):
        r = q @ base_t
        top = topk(r.indices, r.data, k)
        ids[i, :len(top)] = top
    return ids


def scipy_batch(queries, base_t, k, chunk):
    """`chunk` queries per sparse matrix product (all of them: one call)."""
    ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        r = queries[start:start + chunk] @ base_t
        for i in range(r.shape[0]):
            lo, hi = r.indptr[i], r.indptr[i + 1]
            top = topk(r.indices[lo:hi], r.data[lo:hi], k)
            ids[start + i, :len(top)] = top
    return ids


@contextlib.contextmanager
def stdout_to_stderr():
    """Sends what native code prints (Seismic's build log) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Evaluator:
    """recall@k against groundtruth.ivecs, strict and tie-aware."""

    def __init__(self, d, queries64, base64, k):
        self.queries, self.base = queries64, base64
        gt = read_vecs(os.path.join(d, "groundtruth.ivecs"), "<i4")[:, :k]
        gs = read_vecs(os.path.join(d, "groundtruth_scores.fvecs"), "<f4")[:, :k]
        self.n_true = (gt >= 0).sum(axis=1)
        self.truth = [set(row[:n].tolist()) for row, n in zip(gt, self.n_true)]
        self.kth = np.array([s[n - 1] if n else np.inf for s, n in zip(gs, self.n_true)], dtype=np.float64)

    def __call__(self, ids):
        q, col = np.nonzero(ids >= 0)
        exact = np.zeros(ids.shape)
        exact[q, col] = np.asarray(self.queries[q].multiply(self.base[ids[q, col]]).sum(axis=1)).ravel()
        strict, ties = [], []
        for i, n in enumerate(self.n_true):
            if n == 0:
                continue
            row = ids[i][ids[i] >= 0]
            strict.append(len(self.truth[i].intersection(row.tolist())) / n)
            good = (exact[i] > 0) & (exact[i] >= self.kth[i] * (1 - 1e-6)) & (ids[i] >= 0)
            ties.append(min(int(good.sum()), n) / n)
        return float(np.mean(strict)), float(np.mean(ties))


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    versions = {}
    for pkg in ("numpy", "scipy", "pyseismic-lsr"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "threads": 1}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="folder written by make_bm25.py")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=0.5,
                   help="repeat an engine's pass over the queries within a round until this much time has passed")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()

    n_terms = sum(1 for _ in open(os.path.join(a.dir, "vocab.txt"), encoding="utf-8"))
    b_ptr, b_ids, b_vals = read_spvecs(os.path.join(a.dir, "base.spvecs"))
    q_ptr, q_ids, q_vals = read_spvecs(os.path.join(a.dir, "query.spvecs"))
    base = sp.csr_matrix((b_vals, b_ids, b_ptr), shape=(len(b_ptr) - 1, n_terms))
    queries = sp.csr_matrix((q_vals, q_ids, q_ptr), shape=(len(q_ptr) - 1, n_terms))
    n_queries = queries.shape[0]
    evaluate = Evaluator(a.dir, queries.astype(np.float64), base.astype(np.float64), a.k)
    base_t = base.T.tocsr()
    query_rows = [queries[i] for i in range(n_queries)]

    runs = {  # name -> (params, build_s, search(): ids)
        "scipy single": ({"format": "CSR base.T, one q @ base.T per query, float32"}, None,
                         lambda: scipy_single(query_rows, base_t, a.k)),
        "scipy batch": ({"format": "CSR queries @ CSR base.T, one call, float32"}, None,
                        lambda: scipy_batch(queries, base_t, a.k, n_queries)),
        f"scipy batch/{BATCH_CHUNK}": ({"format": f"CSR queries @ CSR base.T, {BATCH_CHUNK} queries a call, float32"},
                                       None, lambda: scipy_batch(queries, base_t, a.k, BATCH_CHUNK)),
    }
    seismic_builds = []  # (build params, seconds)
    try:
        import seismic
    except ImportError as e:
        print(f"Seismic skipped: {e} (pip install pyseismic-lsr)", file=sys.stderr)
    else:
        large = n_terms > 65535
        dataset = (seismic.SeismicDatasetLV if large else seismic.SeismicDataset)(dim=n_terms)
        dataset.add_documents_by_id([str(i) for i in range(base.shape[0])], b_ids, b_vals, b_ptr)
        index_class = seismic.SeismicIndexLV if large else seismic.SeismicIndex
        st = seismic.get_seismic_string()
        s_qids = np.array([str(i) for i in range(n_queries)], dtype=st)
        s_comps = [np.array([str(t) for t in q_ids[q_ptr[i]:q_ptr[i + 1]]], dtype=st) for i in range(n_queries)]
        s_vals = [q_vals[q_ptr[i]:q_ptr[i + 1]] for i in range(n_queries)]

        def seismic_search(index, qc, hf):
            def run():
                return index.batch_search(s_qids, s_comps, s_vals, k=a.k, query_cut=qc, heap_factor=hf,
                                          num_threads=1)
            return run

        for b in SEISMIC_BUILDS:
            t0 = time.perf_counter()
            with stdout_to_stderr():
                index = index_class.build_from_dataset(dataset, **b, num_threads=1)
            build_s = time.perf_counter() - t0
            seismic_builds.append((b, build_s))
            for qc, hf in SEISMIC_SEARCHES:
                runs[f"Seismic np={b['n_postings']} qc={qc} hf={hf}"] = (
                    {**b, "index": index_class.__name__, "query_cut": qc, "heap_factor": hf}, build_s,
                    seismic_search(index, qc, hf))

    engines = {name: {"name": name, "params": params, "qps": [], "build_s": build_s}
               for name, (params, build_s, _) in runs.items()}
    last_ids, cpu_ratio = {}, []
    for r in range(a.rounds):
        for name, (_, _, search) in runs.items():
            passes, wall, cpu = 0, 0.0, 0.0
            while passes == 0 or wall < a.min_seconds:
                w, c = time.perf_counter(), time.process_time()
                last_ids[name] = search()
                wall, cpu, passes = wall + time.perf_counter() - w, cpu + time.process_time() - c, passes + 1
            engines[name]["qps"].append(passes * n_queries / wall)
            cpu_ratio.append(cpu / wall)
        lode = run_lodestone(a.dir, a.k, a.min_seconds)
        if lode is not None:
            e = engines.setdefault(lode["name"], {"name": lode["name"], "params": lode["params"], "qps": [],
                                                  "build_s": lode["build_s"]})
            e["qps"].append(n_queries / lode["seconds"])
            last_ids[lode["name"]] = np.asarray(lode["ids"])
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)

    for name, e in engines.items():
        ids = last_ids[name]
        if not isinstance(ids, np.ndarray):  # Seismic: [[(query_id, score, doc_id), ...], ...]
            rows = ids
            ids = np.full((n_queries, a.k), -1, dtype=np.int64)
            for i, res in enumerate(rows):
                ids[i, :len(res)] = [int(doc) for _, _, doc in res]
        e["qps_median"] = statistics.median(e["qps"])
        e["recall"], e["recall_ties"] = evaluate(ids)

    print(f"\nBM25 top-{a.k}, {base.shape[0]:,} docs, {n_queries:,} queries, vocab {n_terms:,}; one thread, "
          f"median of {a.rounds} rounds; CPU/wall of timed calls: max {max(cpu_ratio):.2f}\n")
    for b, build_s in seismic_builds:
        print(f"Seismic build np={b['n_postings']}: {b}, {build_s:.1f} s")
    print(f"\n| engine | queries/s | recall@{a.k} | recall@{a.k} (ties) | build s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for e in engines.values():
        build = f"{e['build_s']:.1f}" if e["build_s"] is not None else "-"
        print(f"| {e['name']} | {e['qps_median']:,.0f} | {e['recall']:.4f} | {e['recall_ties']:.4f} | {build} |")
    if max(cpu_ratio) > 1.2:
        print("\nWARNING: a timed call used more CPU than wall time: more than one thread ran.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                       "dir": os.path.abspath(a.dir), "k": a.k, "rounds": a.rounds, "min_seconds": a.min_seconds,
                       "engines": list(engines.values())}, f, indent=1)


if __name__ == "__main__":
    main()
