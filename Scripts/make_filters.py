#!/usr/bin/env python3
"""Filters at chosen selectivities on pypi-minilm, with exact filtered ground truth.

    python3 Scripts/make_filters.py [--data ../shared/data/pypi-minilm] [--out bench-out/filters]

Writes, for each filter below, `Benchmarks/filters/<name>.json` (committed:
the filter in Pinecone's language, its match count and selectivity) and
`<out>/groundtruth_filter_<name>.ivecs` (not committed: each query's exact
top-100 among the matching base rows, cosine in float64, ties to the lower
row). The filter files name their ground truth relative to `--out`, so
`lodestone bench --filter` finds it with `--filter-truth-dir`.

The filters span 0.1% to 98% of the index and every operator class
(ranges, $in, $nin, $ne, $or, $and of two and three clauses, $exists); two
follow the text's meaning (package families named in the id, and the
popular packages), the hard case for a filtered graph walk.

Against the query: for each filter passing 1% to 60%, the 200 queries whose
exact top 100 pass it least (the records nearest them mostly fail it:
old packages for a query about a new framework) are written as a query set
of their own, `<out>/against_<name>_query.fvecs`, with its unfiltered and
filtered ground truth, and `Benchmarks/filters/against/<name>.json` names
all three (`Benchmarks/compare_filters.py --against` runs them).
"""
import argparse, json, os, re, sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks"))
from peers import pinecone_match  # noqa: E402  (the filter semantics the benchmarks' peers use)


def filters(meta):
    """(name, description, filter) for each filter; some depend on the data."""
    django = sorted(m["id"] for m in meta if re.split(r"[-_.]", m["id"])[0] == "django")
    web = sorted(m["id"] for m in meta if re.split(r"[-_.]", m["id"])[0] in ("django", "flask", "fastapi", "odoo"))
    return [
        ("top_ranked", "0.1%: among the 1,000 most-downloaded packages", {"rank": {"$lte": 1000}}),
        ("django", "2%: a package family named in the id (follows the text's meaning)", {"id": {"$in": django}}),
        ("years_2015_2017", "5%: a year range", {"year": {"$gte": 2015, "$lte": 2017}}),
        ("web_frameworks", "3.5%: four package families ($in on the id; follows the text)", {"id": {"$in": web}}),
        ("old_or_popular", "10%: released before 2018, or popular ($or)",
         {"$or": [{"year": {"$lt": 2018}}, {"popular": True}]}),
        ("long_summaries", "20%: summaries of 13 words or more (a numeric range)", {"words": {"$gte": 13}}),
        ("recent_short", "25%: 2025 or later and at most 8 words ($and)",
         {"$and": [{"year": {"$gte": 2025}}, {"words": {"$lte": 8}}]}),
        ("years_2024_2026", "48%: $in of two years", {"year": {"$in": [2024, 2026]}}),
        ("ranked_or_recent", "40%: has a rank ($exists) or 2026", {"$or": [{"rank": {"$exists": True}}, {"year": 2026}]}),
        ("before_2025", "47%: $nin of two years", {"year": {"$nin": [2025, 2026]}}),
        ("mid_unpopular", "three clauses ($and of a year range, $in of word counts, $ne on a flag)",
         {"$and": [{"year": {"$gte": 2019, "$lte": 2024}}, {"words": {"$in": [6, 7, 8, 9, 10]}},
                   {"popular": {"$ne": True}}]}),
        ("not_popular", "most records: $ne on a flag", {"popular": {"$ne": True}}),
    ]


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def write_ivecs(path, rows):
    rows = np.ascontiguousarray(rows, dtype="<i4")
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype="<i4")
    out[:, 0] = rows.shape[1]
    out[:, 1:] = rows
    out.tofile(path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "pypi-minilm"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench-out", "filters"))
    p.add_argument("--k", type=int, default=100)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    meta = [json.loads(l) for l in open(os.path.join(args.data, "base_meta.jsonl"))]
    base = read_vecs(os.path.join(args.data, "base.fvecs"), "<f4").astype(np.float64)
    queries = read_vecs(os.path.join(args.data, "query.fvecs"), "<f4").astype(np.float64)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ base.T  # 1,000 x 100,000, float64
    top = np.argsort(-scores, axis=1, kind="stable")[:, : max(100, args.k)]  # each query's unfiltered top
    for name, description, f in filters(meta):
        rows = np.array([i for i, m in enumerate(meta) if pinecone_match(f, m)], dtype=np.int64)
        s = scores[:, rows]
        k = min(args.k, len(rows))
        order = np.lexsort((np.broadcast_to(rows, s.shape), -s), axis=1)[:, :k]
        truth = rows[order]
        if k < args.k:
            truth = np.hstack([truth, np.full((len(queries), args.k - k), -1)])
        gt = f"groundtruth_filter_{name}.ivecs"
        write_ivecs(os.path.join(args.out, gt), truth)
        spec = {"name": name, "description": description, "filter": f, "matches": int(len(rows)),
                "base_count": len(meta), "selectivity": round(len(rows) / len(meta), 5), "k": args.k, "groundtruth": gt}
        with open(os.path.join(ROOT, "Benchmarks", "filters", f"{name}.json"), "w") as out:
            json.dump(spec, out, indent=1)
            out.write("\n")
        print(f"{name}: {len(rows)} matches ({len(rows) / len(meta):.2%})")
        share = len(rows) / len(meta)
        if 0.01 <= share <= 0.6:
            against(args, name, description, rows, top, queries, spec)


def against(args, name, description, rows, top, queries, spec, count=200):
    """The `count` queries whose exact top 100 (`top`) pass the filter least, as a query set with its ground truth."""
    passing = np.isin(top[:, :100], rows).mean(axis=1)
    chosen = np.sort(np.argsort(passing, kind="stable")[:count])
    qfile, tfile, gfile = (f"against_{name}_query.fvecs", f"against_{name}_groundtruth.ivecs",
                           f"groundtruth_filter_against_{name}.ivecs")
    q = queries[chosen].astype("<f4")
    out = np.empty((len(chosen), q.shape[1] + 1), dtype="<f4")
    out[:, 0] = np.array([q.shape[1]], dtype="<i4").view("<f4")[0]
    out[:, 1:] = q
    out.tofile(os.path.join(args.out, qfile))
    write_ivecs(os.path.join(args.out, tfile), top[chosen, : args.k])
    truth = np.fromfile(os.path.join(args.out, spec["groundtruth"]), dtype="<i4").reshape(len(queries), -1)[:, 1:]
    write_ivecs(os.path.join(args.out, gfile), truth[chosen])
    folder = os.path.join(ROOT, "Benchmarks", "filters", "against")
    os.makedirs(folder, exist_ok=True)
    spec = dict(spec, name=f"against_{name}", groundtruth=gfile, queries=qfile, truth=tfile,
                description=f"{description}, for the {count} queries whose nearest records pass it least",
                nearest_passing=round(float(passing[chosen].mean()), 4), query_count=count)
    with open(os.path.join(folder, f"{name}.json"), "w") as fh:
        json.dump(spec, fh, indent=1)
        fh.write("\n")
    print(f"  against the query: {count} queries, {passing[chosen].mean():.1%} of their nearest 100 pass "
          f"(all queries: {passing.mean():.1%})")


if __name__ == "__main__":
    main()
