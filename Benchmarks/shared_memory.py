#!/usr/bin/env python3
"""Many processes serving one persisted index read-only: how much memory do
they take together? Each process maps the index's segment; the kernel keeps
one copy of its pages in the page cache, and PSS (proportional set size,
from /proc/<pid>/smaps) charges each process its share of it.

    pip install ./Python numpy
    python3 Benchmarks/shared_memory.py [--data ../shared/data/pypi-minilm] [--processes 1 2 4 8]

Builds an HNSW index of the base vectors (cosine, M=16, efConstruction=200)
with the Python package, persists it, then for each process count starts
that many Python processes which open the database read-only
(`lodestone.Database(path, read_only=True)`), run the 1,000 queries and
fetch every record by id (so every page of the segment has been touched),
and wait. While they wait, it reads each one's /proc/<pid>/smaps: the segment
mapping's RSS and PSS, and the process's whole RSS, PSS and private memory;
and, against a baseline process without an index, the memory the index
takes in all of them together. It also checks that a writer is refused while they hold the index.
"""
import argparse, json, os, subprocess, sys, tempfile, textwrap, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA  # noqa: E402
from peers import read_matrix  # noqa: E402

WORKER = textwrap.dedent("""
    import json, sys, numpy as np, lodestone
    path, queries, count = sys.argv[1], np.load(sys.argv[2]), int(sys.argv[3])
    ix = lodestone.Database(path, read_only=True).index("bench")
    for q in queries:
        ix.query(q, top_k=10)
    n = 0
    for start in range(0, count, 1000):  # every record by id: every page of the segment read
        n += len(ix.fetch([str(i) for i in range(start, min(count, start + 1000))]))
    print(json.dumps({"fetched": n}), flush=True)
    sys.stdin.readline()
""")


# The same process without an index: Python, numpy, the queries and the
# native library loaded. Its PSS is what each process costs before Lodestone
# holds anything, so PSS - n x baseline is the memory the index takes.
BASELINE = textwrap.dedent("""
    import json, sys, numpy as np, lodestone
    queries = np.load(sys.argv[2])
    lodestone.library_info()
    print(json.dumps({"fetched": 0}), flush=True)
    sys.stdin.readline()
""")


def smaps(pid, segment_dir):
    """(segment RSS, segment PSS, process RSS, PSS, private) in MiB."""
    seg_rss = seg_pss = rss = pss = private = 0
    in_segment = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(":"):  # a mapping's header line
                in_segment = len(parts) >= 6 and parts[-1].startswith(segment_dir) and "segment-" in parts[-1]
                continue
            key, kib = parts[0][:-1], int(parts[1]) if parts[1].isdigit() else 0
            if key == "Rss":
                rss += kib
                seg_rss += kib if in_segment else 0
            elif key == "Pss":
                pss += kib
                seg_pss += kib if in_segment else 0
            elif key in ("Private_Clean", "Private_Dirty"):
                private += kib
    return seg_rss / 1024, seg_pss / 1024, rss / 1024, pss / 1024, private / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--prefix", default="", help="file prefix in --data (small_ for the 10,000 slice)")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    import lodestone
    base = read_matrix(os.path.join(args.data, args.prefix + "base.fvecs"), "<f4")
    queries = read_matrix(os.path.join(args.data, args.prefix + "query.fvecs"), "<f4")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lodestone-pss-") as tmp:
        path = os.path.join(tmp, "db")
        t0 = time.perf_counter()
        with lodestone.Database(path) as db:
            ix = db.create_index("bench", dimension=base.shape[1], metric="cosine")
            for start in range(0, len(base), 10_000):
                chunk = base[start:start + 10_000]
                ix.upsert(ids=[str(start + i) for i in range(len(chunk))], values=chunk, threads=os.cpu_count())
        build = time.perf_counter() - t0
        index_dir = os.path.join(path, "bench")
        file_mb = sum(os.path.getsize(os.path.join(index_dir, f)) for f in os.listdir(index_dir)) / 2**20
        print(f"data: {args.data} ({args.prefix or 'full'}) {base.shape[0]} x {base.shape[1]}; built and persisted "
              f"in {build:.0f} s; index files {file_mb:.0f} MiB; machine: {os.cpu_count()} cores", flush=True)
        np.save(os.path.join(tmp, "q.npy"), queries)
        b = subprocess.Popen([sys.executable, "-c", BASELINE, path, os.path.join(tmp, "q.npy")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        b.stdout.readline()
        baseline = smaps(b.pid, index_dir)[3]
        b.communicate("\n")
        print(f"baseline process (Python, numpy, queries, library; no index): PSS {baseline:.1f} MiB", flush=True)
        for n in args.processes:
            procs = [subprocess.Popen([sys.executable, "-c", WORKER, path, os.path.join(tmp, "q.npy"), str(len(base))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
            try:
                for p in procs:
                    assert json.loads(p.stdout.readline())["fetched"] == len(base)
                try:
                    lodestone.Database(path).index("bench")
                    writer = "allowed (unexpected)"
                except lodestone.IndexLocked:
                    writer = "refused (IndexLocked)"
                m = [smaps(p.pid, index_dir) for p in procs]
            finally:
                for p in procs:
                    p.communicate("\n")
            row = {"processes": n, "segment_rss_mb_each": m[0][0], "segment_pss_mb_total": sum(x[1] for x in m),
                   "rss_mb_total": sum(x[2] for x in m), "pss_mb_total": sum(x[3] for x in m),
                   "private_mb_each": sum(x[4] for x in m) / n, "writer": writer, "file_mb": file_mb,
                   "index_mb_total": sum(x[3] for x in m) - n * baseline}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    one = rows[0]["index_mb_total"] / rows[0]["processes"]
    print("| processes | segment RSS per process (MiB) | segment PSS, all processes (MiB) | RSS, all (MiB) | "
          "PSS, all (MiB) | private per process (MiB) | index memory, all (PSS - baseline; MiB) | vs one process | "
          "a writer meanwhile |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['processes']} | {r['segment_rss_mb_each']:.0f} | {r['segment_pss_mb_total']:.0f} | "
              f"{r['rss_mb_total']:.0f} | {r['pss_mb_total']:.0f} | {r['private_mb_each']:.0f} | "
              f"{r['index_mb_total']:.0f} | {r['index_mb_total'] / one:.2f}x | {r['writer']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
