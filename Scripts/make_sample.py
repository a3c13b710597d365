#!/usr/bin/env python3
"""Cuts the committed sample in Data/ from ../shared/data/pypi-minilm.

The sample: the first 2,000 base vectors and the first 100 queries of the
pypi-minilm set, their metadata, and the exact top-100 of each query among the
2,000 (cosine, float64, ties to the lower row), computed here as the dataset's
own ground truth was.
"""
import json, os, sys
import numpy as np

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pypi-minilm")
DST = os.path.join(os.path.dirname(__file__), "..", "Data")
N, Q, K = 2000, 100, 100

def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)

def write_vecs(path, a):
    a = np.ascontiguousarray(a)
    n, d = a.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = a.view("<i4")
    out.tofile(path)

base = read_vecs(os.path.join(SRC, "small_base.fvecs"), "<f4")[:N]
query = read_vecs(os.path.join(SRC, "small_query.fvecs"), "<f4")[:Q]
b = base.astype(np.float64); b /= np.linalg.norm(b, axis=1, keepdims=True)
q = query.astype(np.float64); q /= np.linalg.norm(q, axis=1, keepdims=True)
sims = q @ b.T
gt = np.array([np.lexsort((np.arange(N), -row))[:K] for row in sims], dtype="<i4")

os.makedirs(DST, exist_ok=True)
write_vecs(os.path.join(DST, "base.fvecs"), base)
write_vecs(os.path.join(DST, "query.fvecs"), query)
write_vecs(os.path.join(DST, "groundtruth.ivecs"), gt)
for name, count in (("base_meta.jsonl", N), ("query_meta.jsonl", Q)):
    src = "small_base_meta.jsonl" if name == "base_meta.jsonl" else "query_meta.jsonl"
    with open(os.path.join(SRC, src), encoding="utf-8") as f, open(os.path.join(DST, name), "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i == count: break
            g.write(line)
print("wrote", DST)
