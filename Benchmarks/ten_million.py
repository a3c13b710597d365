#!/usr/bin/env python3
"""Ten million vectors on one 24 GB machine: Lodestone beside faiss, diskannpy and hnswlib at 100k, 1M and 10M.

    python3 Benchmarks/ten_million.py [--work /work/ten-million] [--sizes 100000,1000000,10000000]
                                      [--engines lodestone,faiss-hnswsq,faiss-ivfpq,diskann,hnswlib]
                                      [--plot Benchmarks/ten-million.png]

Every step saves what it made in WORK and is skipped when run again, so an
interrupted run resumes where it stopped (delete a step's file to redo it):
data (base_N.fvecs, queries), ground truth (truth_N.ivecs), then for each N
and engine results/ENGINE_N.json. Disk: the 10M base is 15.4 GB, and each
engine's index lives in WORK only until its queries are measured.

The data is million.py's: a Gaussian mixture fitted to pypi-minilm's
100,000 real MiniLM vectors (384-d, unit length), drawn here in blocks of
500,000 so memory stays small; bases of N rows are the first N rows of one
10M draw (another seed than million.py's). The script reports the mean
similarity of the 1st and 10th nearest neighbour of the real data and of the
generated data at 100k. Ground truth: exact top 10 of 10,000 queries, faiss
IndexFlatIP over 500,000-row blocks on 2 threads.

Each engine at each N, cosine, M=16 (graph engines), efConstruction 100:
- build: time, peak RSS (GNU time), bytes on disk. Lodestone as a user loads
  a vector file (`lodestone create --traversal compact`, `lodestone upsert
  base.fvecs`); peers in one add call on 2 threads, as their users do.
- serving, in a fresh process: open time; one-thread queries/s, p50 and p99
  latency at each point of a sweep (ef, or nprobe), on 1,000 queries; at the
  cheapest point reaching recall@10 0.95: resident memory after the queries
  (RSS and PSS from /proc/self/smaps_rollup), and the 10,000-query batch on
  2 threads. Lodestone one query at a time from Swift (`lodestone
  bench-open`); peers through one batch call on one thread, and their
  latencies one query per call (the peer's best case for a latency).
- Lodestone also: the resident memory split into its own (anonymous) and
  mapped page-cache pages (which the kernel reclaims under pressure); the
  chosen ef again from a cold page cache inside a memory cgroup of N x 580
  bytes + 200 MB (cgroup v1, as root: 6 GB at 10M); the k-NN job (`lodestone
  knn --index`, the 10,000 queries, 2 threads, to .npy); `persist --merge`;
  and a 1,000-record upsert + persist (a delta, not the segment).
- --build-timeout (default 3600 s): a build that does not finish in it is
  reported as not finished at that N, and the engine is not tried larger.

The engines: `lodestone` (compact traversal: 4-bit codes and links in
memory, float32 vectors read from the segment for the finalists);
`faiss-hnswsq` (IndexHNSWSQ, 8-bit scalar quantizer, M 16); `faiss-ivfpq`
(IVF sqrt(16N) lists, PQ 48 x 8 bits, IndexRefine re-ranking from an
IndexFlat of the float32 vectors in memory, sized once: at 10M that copy
alone is 15.4 GB); `diskann`
(diskannpy's disk index, R 64, L 100, its PQ in RAM); `hnswlib` (float32,
M 16).
"""
import argparse, glob, json, os, shutil, subprocess, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone, pick, timed_child  # noqa: E402
from million import DIM, finish_plot, fit_mixture, json_lines, read_vecs, recall, write_vecs  # noqa: E402

TARGET = 0.95
BLOCK = 500_000
QUERIES = 10_000
EFS = [16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512]


def rows(path):
    """An .fvecs file as a read-only (N, DIM) view (no copy)."""
    raw = np.memmap(path, dtype="<f4", mode="r")
    return raw.reshape(-1, DIM + 1)[:, 1:]


def append_vecs(f, x):
    out = np.empty((x.shape[0], DIM + 1), dtype="<i4")
    out[:, 0] = DIM
    out[:, 1:] = np.ascontiguousarray(x, dtype="<f4").view("<i4")
    out.tofile(f)


# -- steps: data, ground truth ----------------------------------------------

def data(a):
    info_path = f"{a.work}/data.json"
    if os.path.exists(info_path):
        return json.load(open(info_path))
    import faiss
    faiss.omp_set_num_threads(2)
    real, draw = fit_mixture(a.data, np.random.default_rng(20261207))
    queries = draw(QUERIES)
    write_vecs(f"{a.work}/queries_{QUERIES}.fvecs", queries)
    write_vecs(f"{a.work}/queries_1000.fvecs", queries[:1000])
    largest = max(a.sizes)
    t0 = time.perf_counter()
    with open(f"{a.work}/base_{largest}.fvecs.tmp", "wb") as big:
        done = 0
        while done < largest:
            block = draw(min(BLOCK, largest - done))
            append_vecs(big, block)
            big.flush()
            for n in a.sizes:
                if n < largest and done < n <= done + len(block):
                    write_vecs(f"{a.work}/base_{n}.fvecs", np.vstack([rows(f"{a.work}/base_{largest}.fvecs.tmp")[:done],
                                                                       block[:n - done]]) if done else block[:n])
            done += len(block)
            print(f"{time.strftime('%H:%M:%S')} data: {done:,} / {largest:,}", file=sys.stderr, flush=True)
    os.replace(f"{a.work}/base_{largest}.fvecs.tmp", f"{a.work}/base_{largest}.fvecs")
    base = rows(f"{a.work}/base_{largest}.fvecs")
    real_scores = read_vecs(f"{a.data}/groundtruth_scores.fvecs")
    gen = faiss.IndexFlatIP(DIM)
    gen.add(np.ascontiguousarray(base[:100000]))
    gen_scores, _ = gen.search(queries[:1000], 10)
    info = {"profile": {"real_nn1": float(real_scores[:, 0].mean()), "real_nn10": float(real_scores[:, 9].mean()),
                        "generated_nn1": float(gen_scores[:, 0].mean()),
                        "generated_nn10": float(gen_scores[:, 9].mean())},
            "generate_s": time.perf_counter() - t0}
    json.dump(info, open(info_path, "w"), indent=1)
    return info


def truth(a):
    """Exact top 10 of the 10,000 queries at every size, in one pass over the largest base."""
    sizes = sorted(a.sizes)
    if all(os.path.exists(f"{a.work}/truth_{n}.ivecs") for n in sizes):
        return
    import faiss
    faiss.omp_set_num_threads(2)
    q = read_vecs(f"{a.work}/queries_{QUERIES}.fvecs")
    base = rows(f"{a.work}/base_{max(sizes)}.fvecs")
    best_s = np.full((len(q), 10), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), 10), -1, dtype=np.int64)
    done = 0
    t0 = time.perf_counter()
    for n in sizes:
        while done < n:
            end = min(n, done + BLOCK)
            flat = faiss.IndexFlatIP(DIM)
            flat.add(np.ascontiguousarray(base[done:end]))
            s, i = flat.search(q, 10)
            s_all = np.hstack([best_s, s])
            i_all = np.hstack([best_i, i + done])
            top = np.argsort(-s_all, axis=1, kind="stable")[:, :10]
            best_s = np.take_along_axis(s_all, top, axis=1)
            best_i = np.take_along_axis(i_all, top, axis=1)
            done = end
            print(f"{time.strftime('%H:%M:%S')} truth: {done:,} rows", file=sys.stderr, flush=True)
        write_vecs(f"{a.work}/truth_{n}.ivecs", best_i.astype("<i4"))
    print(f"truth: {time.perf_counter() - t0:.0f} s", file=sys.stderr)


# -- processes ---------------------------------------------------------------

def resident():
    """This process's resident and proportional set sizes, in bytes."""
    out = {}
    for line in open("/proc/self/smaps_rollup"):
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            out[name.lower()] = int(rest.split()[0]) * 1024
    return out


# -- Lodestone ---------------------------------------------------------------

def lodestone(a, n, exe, env):
    work, name = a.work, "bench"
    db = f"{work}/db_lodestone_{n}"
    shutil.rmtree(db, ignore_errors=True)
    common = ["--db", db]
    timed_child([exe, "create", name, *common, "--dimension", str(DIM), "--metric", "cosine", "--m", "16",
                 "--ef-construction", "100", "--traversal", "compact"], env)
    built = timed_child([exe, "upsert", name, f"{work}/base_{n}.fvecs", *common, "--batch", "10000", "--json"], env,
                        timeout=a.build_timeout, watch=work)
    if built is None:
        shutil.rmtree(db, ignore_errors=True)
        return {"engine": "lodestone", "n": n, "finished": False, "build_timeout_s": a.build_timeout}
    _, build_s, build_rss, build_disk = built
    # One segment for the queries (the load's last persist may have left a delta).
    _, merge_s, merge_rss, _ = timed_child([exe, "persist", name, *common, "--merge"], env)
    segment = glob.glob(f"{db}/{name}/segment-*.lodestone")[0]
    row = {"engine": "lodestone", "n": n, "finished": True, "build_s": build_s, "build_peak_rss": build_rss,
           "build_peak_disk": build_disk, "merge_s": merge_s, "merge_peak_rss": merge_rss,
           "file_bytes": sum(os.path.getsize(p) for p in glob.glob(f"{db}/{name}/*"))}
    truth = f"{work}/truth_{n}.ivecs"
    sweep = []
    for ef in EFS:
        out, _, rss, _ = timed_child([exe, "bench-open", "--segment", segment, "--queries", f"{work}/queries_1000.fvecs",
                                      "--truth", truth, "--ef", str(ef), "--passes", "3"], env)
        line = json_lines(out)[0]
        sweep.append({"ef": ef, "recall": line["reopened_recall"], "qps": line["steady_qps"],
                      "first_pass_qps": line["reopened_qps"], "p50_us": line["steady_p50_us"],
                      "p99_us": line["steady_p99_us"], "open_ms": line["open_ms"], "rss": line.get("serve_rss"),
                      "pss": line.get("serve_pss"), "peak_rss": rss})
        if line["reopened_recall"] >= a.target + 0.02:
            break
    row["sweep"] = sweep
    best = pick(sweep, a.target)
    row.update({"point": f"ef {best['ef']}", **{k: best[k] for k in ("recall", "qps", "p50_us", "p99_us", "open_ms",
                                                                       "rss", "pss", "peak_rss")}})
    for k in ("rss_anon", "rss_file"):
        row[k] = json_lines(timed_child([exe, "bench-open", "--segment", segment, "--queries",
                                         f"{work}/queries_1000.fvecs", "--truth", truth, "--ef", str(best["ef"]),
                                         "--passes", "3"], env)[0])[0].get("serve_" + k)
    out, _, _, _ = timed_child([exe, "bench-open", "--segment", segment, "--queries", f"{work}/queries_{QUERIES}.fvecs",
                                "--truth", truth, "--ef", str(best["ef"]), "--batch", "--threads", "2"], env)
    row["batch_qps"] = json_lines(out)[0]["batch_qps"]
    # The k-NN job: every query's 10 nearest through the index, 2 threads, to .npy files.
    out, seconds, knn_rss, _ = timed_child([exe, "knn", *common, "--index", name, "--queries",
                                            f"{work}/queries_{QUERIES}.fvecs", "--k", "10", "--ef", str(best["ef"]),
                                            "--threads", "2", "--out", f"{work}/knn_{n}.npy", "--restart", "--json"],
                                           env)
    done = [l for l in json_lines(out) if l.get("event") == "done"][0]
    row.update({"knn_qps": done["queries_per_second"], "knn_s": seconds, "knn_peak_rss": knn_rss,
                "knn_recall": recall(np.load(f"{work}/knn_{n}.ids.npy"), read_vecs(truth, "<i4"))})
    row["bounded"] = bounded_serving(exe, env, segment, f"{work}/queries_1000.fvecs", truth, best["ef"],
                                     n * a.limit_bytes_per_vector + 200_000_000)
    # A small change: 1,000 records upserted (replacing ids 0-999), then persisted.
    small = f"{work}/small_change.fvecs"
    if not os.path.exists(small):
        write_vecs(small, read_vecs(f"{work}/queries_{QUERIES}.fvecs")[-1000:])
    before = {p: os.path.getsize(p) for p in glob.glob(f"{db}/{name}/*")}
    _, seconds, _, _ = timed_child([exe, "upsert", name, small, *common, "--json"], env)
    after = {p: os.path.getsize(p) for p in glob.glob(f"{db}/{name}/*")}
    row.update({"small_change_s": seconds,
                "small_change_bytes_written": sum(size for p, size in after.items() if before.get(p) != size)})
    shutil.rmtree(db, ignore_errors=True)
    return row


def bounded_serving(exe, env, segment, queries, truth, ef, limit):
    """The queries from a cold page cache inside a memory cgroup of `limit` bytes (cgroup v1, as root: the
    page cache the process faults in counts against it), or None where that cannot be done."""
    cg = "/sys/fs/cgroup/memory/lodestone-bench"
    if os.geteuid() != 0 or not os.path.isdir("/sys/fs/cgroup/memory"):
        return None
    os.makedirs(cg, exist_ok=True)
    with open(f"{cg}/memory.limit_in_bytes", "w") as f:
        f.write(str(int(limit)))
    with open(f"{cg}/memory.max_usage_in_bytes", "w") as f:
        f.write("0")
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs; exec "$0" "$@"', exe, "bench-open", "--segment", segment,
           "--queries", queries, "--truth", truth, "--ef", str(ef), "--passes", "3"]
    line = json_lines(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, cwd=ROOT).stdout)[0]
    usage = int(open(f"{cg}/memory.max_usage_in_bytes").read())
    return {"limit": int(limit), "max_usage": usage, "recall": line["reopened_recall"],
            "first_pass_qps": line["reopened_qps"], "first_pass_p99_us": line["reopened_p99_us"],
            "qps": line["steady_qps"], "p50_us": line["steady_p50_us"], "p99_us": line["steady_p99_us"]}


# -- peers (each phase in a child process of this script) ----------------------

def ivf_lists(n):
    return min(16384, 1 << round(np.log2(4 * np.sqrt(n))))


def peer_build(engine, n, work):
    base = rows(f"{work}/base_{n}.fvecs")
    path = f"{work}/{engine}_{n}.index"
    t0 = time.perf_counter()
    if engine.startswith("faiss"):
        import faiss
        faiss.omp_set_num_threads(2)
        sample = np.ascontiguousarray(base[:: max(1, n // 250_000)][:250_000])
        if engine == "faiss-hnswsq":
            index = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 100
            index.train(sample)
        else:
            nlist = ivf_lists(n)
            ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.niter = 10
            ivf.train(np.ascontiguousarray(base[:: max(1, n // (40 * nlist))][:40 * nlist]))
        for start in range(0, n, BLOCK):
            (index if engine == "faiss-hnswsq" else ivf).add(np.ascontiguousarray(base[start:start + BLOCK]))
        if engine == "faiss-ivfpq":
            # The float32 copy sized once and filled in place: added block by
            # block, its vector doubles as it grows and holds both copies at
            # once (24 GB at 10M: killed by the OOM killer on this machine).
            refine = faiss.IndexFlatIP(DIM)
            refine.codes.resize(n * DIM * 4)
            copy = faiss.rev_swig_ptr(refine.codes.data(), n * DIM * 4).view("float32").reshape(n, DIM)
            for start in range(0, n, BLOCK):
                copy[start:start + BLOCK] = base[start:start + BLOCK]
            refine.ntotal = n
            index = faiss.IndexRefine(ivf, refine)
        build_s = time.perf_counter() - t0
        faiss.write_index(index, path)
        version = faiss.__version__
    elif engine == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=n, M=16, ef_construction=100, random_seed=42)
        index.set_num_threads(2)
        for start in range(0, n, BLOCK):
            index.add_items(np.ascontiguousarray(base[start:start + BLOCK]), np.arange(start, min(n, start + BLOCK)))
        build_s = time.perf_counter() - t0
        index.save_index(path)
        version = getattr(hnswlib, "__version__", "0.8")
    else:  # diskann: a disk index, R 64, L 100, its PQ codes (48 bytes a vector) in memory
        import diskannpy
        os.makedirs(path, exist_ok=True)
        diskannpy.build_disk_index(data=np.ascontiguousarray(base), distance_metric="l2", index_directory=path,
                                   complexity=100, graph_degree=64, search_memory_maximum=n * 48 / 2**30 + 0.01,
                                   build_memory_maximum=16, num_threads=2, pq_disk_bytes=0, index_prefix="ann")
        build_s = time.perf_counter() - t0
        version = getattr(diskannpy, "__version__", "0.7")
    size = sum(os.path.getsize(p) for p in glob.glob(f"{path}/*")) if os.path.isdir(path) else os.path.getsize(path)
    print(json.dumps({"build_s": build_s, "file_bytes": size, "version": version}))


PEER_POINTS = {
    "faiss-hnswsq": [{"ef": ef} for ef in EFS],
    "hnswlib": [{"ef": ef} for ef in EFS],
    "faiss-ivfpq": [{"nprobe": p, "k_factor": f} for p, f in
                    [(8, 4), (16, 4), (16, 8), (16, 16), (24, 12), (24, 16), (32, 8), (32, 16), (32, 32), (48, 16), (48, 32),
                     (64, 8), (64, 16), (128, 16), (256, 16), (256, 32), (512, 32)]],
    "diskann": [{"L": L} for L in [16, 24, 32, 48, 64, 96, 128, 192, 256, 384]],
}


def peer_serve(engine, n, work, target):
    path = f"{work}/{engine}_{n}.index"
    q1k = read_vecs(f"{work}/queries_1000.fvecs")
    truth = read_vecs(f"{work}/truth_{n}.ivecs", "<i4")
    t0 = time.perf_counter()
    if engine.startswith("faiss"):
        import faiss
        index = faiss.read_index(path)
        ivf = faiss.extract_index_ivf(index) if engine == "faiss-ivfpq" else None

        def configure(point):
            if ivf is None:
                index.hnsw.efSearch = point["ef"]
            else:
                ivf.nprobe = point["nprobe"]
                index.k_factor = point["k_factor"]

        def search(q, threads):
            faiss.omp_set_num_threads(threads)
            return index.search(q, 10)[1]
    elif engine == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="ip", dim=DIM)
        index.load_index(path, max_elements=n)

        def configure(point): index.set_ef(point["ef"])

        def search(q, threads):
            return index.knn_query(q, k=10, num_threads=threads)[0].astype(np.int64)
    else:
        import diskannpy
        index = diskannpy.StaticDiskIndex(index_directory=path, num_threads=2, num_nodes_to_cache=min(n // 100, 100_000),
                                          cache_mechanism=1, distance_metric="l2", vector_dtype=np.float32,
                                          dimensions=DIM, index_prefix="ann")
        state = {}

        def configure(point): state.update(point)

        def search(q, threads):
            return index.batch_search(q, k_neighbors=10, complexity=max(10, state["L"]), num_threads=threads,
                                      beam_width=2)[0].astype(np.int64)
    open_ms = (time.perf_counter() - t0) * 1e3
    sweep = []
    for point in PEER_POINTS[engine]:
        configure(point)
        search(q1k[:10], 1)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            ids = search(q1k, 1)
            best = min(best, time.perf_counter() - t0)
        sweep.append({**point, "recall": recall(ids, truth[:1000]), "qps": len(q1k) / best})
        if sweep[-1]["recall"] >= target + 0.02:
            break
    chosen = pick(sweep, target)
    configure(chosen)
    # Latency: one query a call (the peer's Python call included: its best case for a single query).
    latencies = []
    for i in range(len(q1k)):
        t0 = time.perf_counter()
        search(q1k[i:i + 1], 1)
        latencies.append(time.perf_counter() - t0)
    q10k = read_vecs(f"{work}/queries_{QUERIES}.fvecs")
    batch = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        search(q10k, 2)
        batch = min(batch, time.perf_counter() - t0)
    point = ", ".join(f"{k} {v}" for k, v in chosen.items() if k not in ("recall", "qps"))
    print(json.dumps({"open_ms": open_ms, "sweep": sweep, "point": point, "recall": chosen["recall"],
                      "qps": chosen["qps"], "p50_us": float(np.percentile(latencies, 50) * 1e6),
                      "p99_us": float(np.percentile(latencies, 99) * 1e6), "batch_qps": len(q10k) / batch,
                      **resident()}))


def peer(a, n, engine, env):
    python = a.diskann_python if engine == "diskann" else sys.executable
    me = [python, os.path.abspath(__file__), "--work", a.work, "--target", str(a.target)]
    path = f"{a.work}/{engine}_{n}.index"
    kept = f"{path}.build.json"
    if a.keep_index and os.path.exists(path) and os.path.exists(kept):
        row = json.load(open(kept))  # a build kept by an earlier --keep-index run: serve it again
    else:
        built = timed_child(me + ["--phase", f"build:{engine}:{n}"], env, timeout=a.build_timeout, watch=a.work)
        if built is None:
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else (os.path.exists(path) and os.remove(path))
            return {"engine": engine, "n": n, "finished": False, "build_timeout_s": a.build_timeout}
        out, _, build_rss, build_disk = built
        row = {"engine": engine, "n": n, "finished": True, "build_peak_rss": build_rss, "build_peak_disk": build_disk,
               **json_lines(out)[0]}
        if a.keep_index:
            json.dump(row, open(kept, "w"))
    out, _, serve_rss, _ = timed_child(me + ["--phase", f"serve:{engine}:{n}"], env)
    row.update(json_lines(out)[0])
    row["peak_rss"] = serve_rss
    if not a.keep_index:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return row


# -- report --------------------------------------------------------------------

NAMES = {"lodestone": "Lodestone (compact)", "faiss-hnswsq": "faiss HNSWSQ 8-bit", "faiss-ivfpq": "faiss IVF-PQ48 + refine",
         "diskann": "diskannpy (disk index)", "hnswlib": "hnswlib"}


def table(rows, info, a):
    p = info["profile"]
    print(f"\nGenerated like pypi-minilm: mean similarity of the 1st / 10th neighbour, real {p['real_nn1']:.3f} / "
          f"{p['real_nn10']:.3f}, generated {p['generated_nn1']:.3f} / {p['generated_nn10']:.3f}. Cosine, k=10; each "
          f"engine at the cheapest setting reaching recall@10 {a.target} on 1,000 queries, one thread.\n")
    print("| N | engine | build s | build peak RSS GB | build peak disk GB | file GB | open ms | setting | recall@10 | "
          "q/s | p50 us | p99 us | batch q/s (2 thr) | serving RSS GB | serving PSS GB | Lodestone / engine q/s |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sorted({r["n"] for r in rows}):
        lod = next((r for r in rows if r["n"] == n and r["engine"] == "lodestone" and r["finished"]), None)
        for r in [r for r in rows if r["n"] == n]:
            if not r["finished"]:
                print(f"| {n:,} | {NAMES[r['engine']]} | did not finish in {r['build_timeout_s']:.0f} s |" + " |" * 13)
                continue
            ratio = f"{lod['qps'] / r['qps']:.2f}x" if lod and r is not lod else ""
            print(f"| {n:,} | {NAMES[r['engine']]} | {r['build_s']:,.0f} | {r['build_peak_rss'] / 1e9:.2f} | "
                  f"{r.get('build_peak_disk', 0) / 1e9:.1f} | {r['file_bytes'] / 1e9:.2f} | {r['open_ms']:,.1f} | "
                  f"{r['point']} | {r['recall']:.3f} | {r['qps']:,.0f} | {r['p50_us']:,.0f} | {r['p99_us']:,.0f} | "
                  f"{r['batch_qps']:,.0f} | {(r.get('rss') or 0) / 1e9:.2f} | {(r.get('pss') or 0) / 1e9:.2f} | {ratio} |")
    for r in rows:
        if r["engine"] == "lodestone" and r["finished"]:
            print(f"\nLodestone at {r['n']:,}: persist --merge {r['merge_s']:.1f} s; a 1,000-record upsert + persist "
                  f"{r['small_change_s']:.2f} s, {r['small_change_bytes_written']:,} bytes written; serving resident "
                  f"{(r.get('rss_anon') or 0) / 1e9:.2f} GB its own, {(r.get('rss_file') or 0) / 1e9:.2f} GB mapped "
                  f"page cache" + (f"; the k-NN job (10,000 queries, 2 threads, to .npy) {r['knn_qps']:,.0f} q/s."
                                   if "knn_qps" in r else "."))
            b = r.get("bounded")
            if b:
                print(f"Within a {b['limit'] / 1e9:.2f} GB memory cgroup from a cold page cache (peak use "
                      f"{b['max_usage'] / 1e9:.2f} GB): first pass {b['first_pass_qps']:,.0f} q/s (p99 "
                      f"{b['first_pass_p99_us']:,.0f} us), steady {b['qps']:,.0f} q/s (p99 {b['p99_us']:,.0f} us), "
                      f"recall {b['recall']:.3f}.")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for engine, label in NAMES.items():
        rs = sorted([r for r in rows if r["engine"] == engine and r["finished"]], key=lambda r: r["n"])
        if not rs:
            continue
        ns = [r["n"] for r in rs]
        axes[0].plot(ns, [r["qps"] for r in rs], marker="o", label=label)
        axes[1].plot(ns, [(r.get("rss") or 0) / 1e9 for r in rs], marker="o", label=label)
        if engine == "lodestone":  # its resident pages are mostly the segment's, in the page cache
            axes[1].plot(ns, [(r.get("rss_anon") or 0) / 1e9 for r in rs], marker="o", linestyle="--",
                         color=axes[1].lines[-1].get_color(), label=label + ", its own memory")
        axes[2].plot(ns, [r["build_s"] for r in rs], marker="o", label=label)
    finish_plot(fig, axes, [f"queries/s, 1 thread, recall@10 >= {TARGET}", "serving resident memory (RSS), GB",
                            "build seconds, 2 threads"], path, log_y=[0, 2])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--work", default="/work/ten-million")
    p.add_argument("--sizes", default="100000,1000000,10000000")
    p.add_argument("--engines", default="lodestone,faiss-hnswsq,faiss-ivfpq,diskann,hnswlib")
    p.add_argument("--build-timeout", type=float, default=3600)
    p.add_argument("--target", type=float, default=TARGET)
    p.add_argument("--diskann-python", default=sys.executable,
                   help="a Python with diskannpy (it pins numpy 1.x, which faiss 1.15 refuses: give it its own venv)")
    p.add_argument("--limit-bytes-per-vector", type=int, default=580,
                   help="Lodestone's bounded serving run: a memory cgroup of N times this plus 200 MB")
    p.add_argument("--keep-index", action="store_true",
                   help="keep each peer's built index (and its build figures) and serve a kept one again "
                        "instead of building it; delete its result file to rerun the serving step")
    p.add_argument("--plot")
    p.add_argument("--data-only", action="store_true", help="make the data and ground truth in WORK, then stop")
    p.add_argument("--report", action="store_true", help="only print the table (and --plot) of the results so far")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.sizes = sorted(int(x) for x in a.sizes.split(","))
    if a.phase:
        what, engine, n = a.phase.split(":")
        if what == "build":
            peer_build(engine, int(n), a.work)
        else:
            peer_serve(engine, int(n), a.work, a.target)
        return
    os.makedirs(f"{a.work}/results", exist_ok=True)
    info = data(a)
    truth(a)
    if a.data_only:
        print(json.dumps(info))
        return
    engines = [e.strip() for e in a.engines.split(",")]
    gave_up = set()
    env, exe = (None, None) if a.report else (bench_env(), build_lodestone())
    for n in [] if a.report else a.sizes:
        for engine in engines:
            out = f"{a.work}/results/{engine}_{n}.json"
            if os.path.exists(out):
                if not json.load(open(out))["finished"]:
                    gave_up.add(engine)
                continue
            if engine in gave_up:
                continue
            print(f"{time.strftime('%H:%M:%S')} {engine} at {n:,}", file=sys.stderr, flush=True)
            row = lodestone(a, n, exe, env) if engine == "lodestone" else peer(a, n, engine, env)
            row["date"] = time.strftime("%Y-%m-%d")
            json.dump(row, open(out + ".tmp", "w"), indent=1)
            os.replace(out + ".tmp", out)
            if not row["finished"]:
                gave_up.add(engine)
    rows = [json.load(open(f)) for f in sorted(glob.glob(f"{a.work}/results/*.json"))]
    rows = [r for r in rows if r["n"] in a.sizes and r["engine"] in engines]
    table(rows, info, a)
    if a.plot:
        plot(rows, a.plot)


if __name__ == "__main__":
    main()
