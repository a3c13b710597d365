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
- --build-timeout (default 3600 s): a build that does not finish in it is
  reported as not finished at that N, and the engine is not tried larger.

The engines: `lodestone` (compact traversal: 4-bit codes and links in
memory, float32 vectors read from the segment for the finalists);
`faiss-hnswsq` (IndexHNSWSQ, 8-bit scalar quantizer, M 16); `faiss-ivfpq`
(IVF sqrt(16N) lists, PQ 48 x 8 bits, IndexRefineFlat re-ranking from
float32 in memory: at 10M the float32 copy alone is 15.4 GB); `diskann`
(diskannpy's disk index, R 64, L 100, its PQ in RAM); `hnswlib` (float32,
M 16).
"""
import argparse, glob, json, os, shutil, subprocess, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, ROOT, bench_env, build_lodestone  # noqa: E402
from million import DIM, fit_mixture, read_vecs, recall, write_vecs, json_lines  # noqa: E402

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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--work", default="/work/ten-million")
    p.add_argument("--sizes", default="100000,1000000,10000000")
    p.add_argument("--engines", default="lodestone,faiss-hnswsq,faiss-ivfpq,diskann,hnswlib")
    p.add_argument("--build-timeout", type=float, default=3600)
    p.add_argument("--target", type=float, default=TARGET)
    p.add_argument("--plot")
    p.add_argument("--data-only", action="store_true", help="make the data and ground truth in WORK, then stop")
    a = p.parse_args()
    a.sizes = sorted(int(x) for x in a.sizes.split(","))
    os.makedirs(f"{a.work}/results", exist_ok=True)
    info = data(a)
    truth(a)
    if a.data_only:
        print(json.dumps(info))
        return


if __name__ == "__main__":
    main()
