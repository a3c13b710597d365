#!/usr/bin/env python3
"""BM25 sparse vectors and exact ground truth from the pypi-minilm texts.

    python3 make_bm25.py --data /work/shared/data/pypi-minilm --out DIR [--small]

Reads `base_meta.jsonl` and `query_meta.jsonl` (`--small`: the first 10,000
base rows and the first 200 queries, like the dataset's small_* files); the
text of a row is `"<id>: <text>"`, the same text that was embedded.

Tokenizer (simple enough to re-implement elsewhere, e.g. in Swift):
  1. Unicode NFKC normalisation (`unicodedata.normalize("NFKC", s)`; Swift:
     Foundation's `precomposedStringWithCompatibilityMapping`);
  2. lowercase with Python's `str.lower()` (full Unicode case mapping, so
     "İ" becomes "i" + U+0307);
  3. tokens are the maximal runs of code points for which `str.isalnum()` is
     true: general category L* (Lu, Ll, Lt, Lm, Lo) or a Unicode numeric type
     (Decimal, Digit or Numeric: Nd, Nl, No and a few Lo); every other code
     point (spaces, punctuation, "_", "-", combining marks Mn/Mc, ...) only
     separates. In Swift: per Unicode.Scalar, `properties.generalCategory` is
     a letter category or `properties.numericType != nil`;
  4. tokens longer than 64 code points are dropped. No stopwords, no stemming.
The Unicode tables are Python's (`unicodedata.unidata_version`, in README.md).

Vocabulary: token -> id in order of first appearance in the base documents
(file order, then token order); `vocab.txt` has one token per line, line
number (0-based) = id. Query tokens outside the vocabulary are dropped.

Weights, as pinecone-text's BM25Encoder (k1 = 1.2, b = 0.75):
  document: tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), dl = tokens in
            the document, avgdl over the base documents (pinecone-text leaves
            out the constant factor k1 + 1, which changes no ranking);
  query:    idf = log((N + 1) / (df + 0.5)), N = base documents, df = base
            documents containing the term, each query term counted once, the
            values normalised to sum to 1.

Files written to DIR:
  base.spvecs, query.spvecs  per row, little-endian: int32 nnz, nnz int32 term
                             ids (strictly ascending), nnz float32 values; rows
                             with nnz 0 are kept so row numbers match the
                             metadata lines;
  groundtruth.ivecs          TEXMEX, per query int32 100 then the 100 base rows
                             of the exact top-100 by sparse dot product
                             (float64 from the stored float32 values, stable
                             sort, ties to the lower row); only documents with a
                             positive score are results, -1 pads the rest;
  groundtruth_scores.fvecs   the matching scores (float32), -inf where padded;
  vocab.txt, README.md       the vocabulary, and this description with stats.
"""
import argparse, json, os, re, unicodedata
from collections import Counter

import numpy as np
import scipy.sparse as sp

K1, B = 1.2, 0.75
MAX_TOKEN_LEN = 64
GT_K = 100
SMALL_BASE, SMALL_QUERIES = 10_000, 200
# `[^\W_]` matches exactly the code points where str.isalnum() is true
# (checked over all of Unicode with Python 3.11, Unicode 14.0).
TOKEN_RE = re.compile(r"[^\W_]+")


def tokenize(text):
    """The tokens of one text, in order (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in TOKEN_RE.findall(text) if len(t) <= MAX_TOKEN_LEN]


def read_texts(path, limit):
    """`"<id>: <text>"` for the first `limit` lines (all when None)."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(texts) == limit:
                break
            row = json.loads(line)
            texts.append(f"{row['id']}: {row['text']}")
    return texts


def write_spvecs(path, rows):
    """rows: (ids int array ascending, values float32 array) per row."""
    with open(path, "wb") as f:
        for ids, vals in rows:
            f.write(np.int32(len(ids)).astype("<i4").tobytes())
            f.write(np.asarray(ids, dtype="<i4").tobytes())
            f.write(np.asarray(vals, dtype="<f4").tobytes())


def write_vecs(path, matrix, dtype):
    """TEXMEX: per row int32 dimension, then the row in `dtype`."""
    m = np.ascontiguousarray(matrix, dtype=dtype)
    head = np.full((m.shape[0], 1), m.shape[1], dtype="<i4")
    np.hstack([head, m.view("<i4")]).tofile(path)


def to_csr(rows, n_cols):
    """The float64 CSR matrix of float32 rows."""
    indptr = np.cumsum([0] + [len(ids) for ids, _ in rows])
    ids = np.concatenate([ids for ids, _ in rows]).astype(np.int64)
    vals = np.concatenate([v for _, v in rows]).astype(np.float64)
    return sp.csr_matrix((vals, ids, indptr), shape=(len(rows), n_cols))


def exact_topk(queries, base, k, chunk=50):
    """Exact top-k per query row by dot product (float64): stable sort by
    descending score, so ties go to the lower base row; only positive scores
    count. Returns (rows int32 padded with -1, scores float32 padded -inf)."""
    nq = queries.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int32)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    base_t = base.T.tocsr()
    for start in range(0, nq, chunk):
        block = (queries[start:start + chunk] @ base_t).toarray()
        for i, s in enumerate(block):
            pos = np.flatnonzero(s > 0)                      # ascending rows
            top = pos[np.argsort(-s[pos], kind="stable")[:k]]
            ids[start + i, :len(top)] = top
            scores[start + i, :len(top)] = s[top]
    return ids, scores


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the pypi-minilm folder")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--small", action="store_true", help="first 10,000 base rows and first 200 queries")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    base_texts = read_texts(os.path.join(a.data, "base_meta.jsonl"), SMALL_BASE if a.small else None)
    query_texts = read_texts(os.path.join(a.data, "query_meta.jsonl"), SMALL_QUERIES if a.small else None)

    vocab = {}
    base_tf = []
    for text in base_texts:
        toks = tokenize(text)
        for t in toks:
            vocab.setdefault(t, len(vocab))
        base_tf.append(Counter(vocab[t] for t in toks))
    n_docs, n_terms = len(base_tf), len(vocab)
    avgdl = sum(sum(c.values()) for c in base_tf) / n_docs
    df = np.zeros(n_terms, dtype=np.int64)
    for c in base_tf:
        df[list(c)] += 1

    base_rows = []
    for c in base_tf:
        ids = np.array(sorted(c), dtype=np.int64)
        tf = np.array([c[i] for i in ids], dtype=np.float64)
        norm = K1 * (1 - B + B * tf.sum() / avgdl)
        base_rows.append((ids, (tf * (K1 + 1) / (tf + norm)).astype(np.float32)))

    query_rows = []
    for text in query_texts:
        ids = np.array(sorted({vocab[t] for t in tokenize(text) if t in vocab}), dtype=np.int64)
        idf = np.log((n_docs + 1) / (df[ids] + 0.5))
        query_rows.append((ids, (idf / idf.sum() if len(ids) else idf).astype(np.float32)))

    write_spvecs(os.path.join(a.out, "base.spvecs"), base_rows)
    write_spvecs(os.path.join(a.out, "query.spvecs"), query_rows)
    with open(os.path.join(a.out, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(t + "\n" for t in vocab)

    gt_ids, gt_scores = exact_topk(to_csr(query_rows, n_terms), to_csr(base_rows, n_terms), GT_K)
    write_vecs(os.path.join(a.out, "groundtruth.ivecs"), gt_ids, "<i4")
    write_vecs(os.path.join(a.out, "groundtruth_scores.fvecs"), gt_scores, "<f4")

    tokens = list(vocab)
    results = (gt_ids >= 0).sum(axis=1)
    stats = {
        "base documents": f"{n_docs:,}",
        "queries": f"{len(query_rows):,}",
        "vocabulary (distinct tokens in the base)": f"{n_terms:,}",
        "avgdl (tokens per base document)": f"{avgdl:.2f}",
        "nnz per document: mean / max": f"{np.mean([len(r[0]) for r in base_rows]):.2f} / "
                                        f"{max(len(r[0]) for r in base_rows)}",
        "nnz per query: mean / max": f"{np.mean([len(r[0]) for r in query_rows]):.2f} / "
                                     f"{max(len(r[0]) for r in query_rows)}",
        "queries with nnz 0": str(sum(len(r[0]) == 0 for r in query_rows)),
        "queries with fewer than 10 / 100 results": f"{(results < 10).sum()} / {(results < GT_K).sum()}",
        "Unicode version (Python's unicodedata)": unicodedata.unidata_version,
    }
    longest = np.argsort(-df, kind="stable")[:5]
    with open(os.path.join(a.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(f"# BM25 sparse vectors: pypi-minilm{' (small)' if a.small else ''}\n\n")
        f.write(f"Made by `Benchmarks/sparse/make_bm25.py{' --small' if a.small else ''}` from "
                f"`base_meta.jsonl` and `query_meta.jsonl` (document text `\"<id>: <text>\"`).\n\n")
        f.write("```\n" + __doc__.split("\n\n", 2)[2].strip() + "\n```\n\n")
        f.write("Documents whose score is 0 (no query term) are not results: a query with fewer than 100 "
                "matching documents has -1 / -inf pads, and recall@k should divide by "
                "min(k, true results).\n\n## Stats\n\n| | |\n| --- | ---: |\n")
        f.writelines(f"| {k} | {v} |\n" for k, v in stats.items())
        f.write("\nLongest posting lists:\n\n| token | id | df | df / N |\n| --- | ---: | ---: | ---: |\n")
        f.writelines(f"| `{tokens[t]}` | {t} | {df[t]:,} | {df[t] / n_docs:.3f} |\n" for t in longest)
        f.write("\n## Files\n\n| file | bytes |\n| --- | ---: |\n")
        for name in ("base.spvecs", "query.spvecs", "vocab.txt", "groundtruth.ivecs", "groundtruth_scores.fvecs"):
            f.write(f"| `{name}` | {os.path.getsize(os.path.join(a.out, name)):,} |\n")
    print(json.dumps({k: v for k, v in stats.items()}, ensure_ascii=False, indent=1))
    print("longest posting lists:", ", ".join(f"{tokens[t]} ({df[t]:,})" for t in longest))


if __name__ == "__main__":
    main()
