"""Shard sets: one corpus split into immutable files, searched apart and
merged, against one index of the whole corpus and a float64 brute force."""
import json
import os

import numpy as np
import pytest

import lodestone
from lodestone.shards import NO_ID, ShardSet, merge_topk, write_shards

from conftest import canonical, exact_top_k

K = 10


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_flat_shards_merge_to_the_exact_search_of_the_whole(data, tmp_path, metric):
    shards = write_shards(data.base, str(tmp_path / "s"), 4, kind="flat", metric=metric)
    assert len(shards) == 4 and shards.count == len(data.base)
    assert [s.stop - s.start for s in shards.shards] == [len(data.base) // 4] * 4
    ids, scores = shards.knn(data.queries, K)
    whole = lodestone.FlatIndex(data.base.shape[1], metric)
    whole.add(np.arange(len(data.base)), data.base)
    want_ids, want_scores = whole.search(data.queries, K)
    got = canonical(ids, scores, metric)
    want = canonical(want_ids.astype(np.int64), want_scores, metric)
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])  # the same kernel scored the same pair
    # And the float64 reference agrees on the ids (up to near-ties).
    ref_ids, ref_scores = exact_top_k(data.base, data.queries, K, metric)
    agree = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids.tolist(), ref_ids.tolist())])
    assert agree > 0.999, agree
    assert np.allclose(np.sort(scores, axis=1), np.sort(ref_scores, axis=1), atol=1e-4)


def test_hnsw_shards_reach_the_recall_of_one_index(data, tmp_path):
    shards = write_shards(data.base, str(tmp_path / "s"), 3, kind="hnsw", ef_construction=100, threads=2)
    truth = data.truth[:, :K]
    ids, _ = shards.knn(data.queries, K, ef=32)
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids.tolist(), truth.tolist())])
    whole = lodestone.HNSWIndex(data.base.shape[1], "cosine", ef_construction=100)
    whole.add(np.arange(len(data.base)), data.base, threads=2)
    one_ids, _ = whole.search(data.queries, K, ef=32)
    one = np.mean([len(set(a) & set(b)) / K for a, b in zip(one_ids.astype(np.int64).tolist(), truth.tolist())])
    assert recall >= one - 0.01, (recall, one)
    assert recall > 0.9


def test_ids_given_and_files_reopened(data, tmp_path):
    ids = np.arange(len(data.base)) * 7 + 1000
    d = str(tmp_path / "s")
    write_shards(data.base, d, 2, ids=ids)
    shards = ShardSet.open(d)  # a fresh open, as a worker does
    got, _ = shards.knn(data.base[:5], 1)
    assert got[:, 0].tolist() == ids[:5].tolist()  # each row finds itself, by its id
    manifest = json.load(open(os.path.join(d, "shards.json")))
    assert manifest["format"] == 1 and manifest["count"] == len(data.base)
    assert [tuple(s["rows"]) for s in manifest["shards"]] == [(0, len(data.base) // 2), (len(data.base) // 2, len(data.base))]


def test_vector_files_are_read_in_place(data, tmp_path):
    npy = tmp_path / "base.npy"
    np.save(npy, data.base)
    fvecs = tmp_path / "base.fvecs"
    out = np.empty((len(data.base), data.base.shape[1] + 1), dtype="<i4")
    out[:, 0] = data.base.shape[1]
    out[:, 1:] = data.base.view("<i4")
    out.tofile(fvecs)
    a = write_shards(str(npy), str(tmp_path / "a"), 2).knn(data.queries[:20], K)
    b = write_shards(str(fvecs), str(tmp_path / "b"), 3).knn(data.queries[:20], K)
    assert np.array_equal(canonical(*a)[0], canonical(*b)[0])


def test_merge_rules():
    # Two shards' answers for two queries; -1 marks a missing neighbour.
    ids = [np.array([[5, 9, NO_ID], [1, 2, 3]]), np.array([[4, 7, 8], [NO_ID, NO_ID, NO_ID]])]
    scores = [np.array([[0.9, 0.5, np.nan], [0.3, 0.2, 0.1]], dtype=np.float32),
              np.array([[0.9, 0.8, 0.1], [np.nan, np.nan, np.nan]], dtype=np.float32)]
    got_ids, got_scores = merge_topk(ids, scores, 3)
    assert got_ids.tolist() == [[4, 5, 7], [1, 2, 3]]  # the tie at 0.9 goes to the smaller id
    assert np.allclose(got_scores, [[0.9, 0.9, 0.8], [0.3, 0.2, 0.1]])
    # Order of the parts never matters.
    again = merge_topk(ids[::-1], scores[::-1], 3)
    assert np.array_equal(again[0], got_ids)
    # Euclidean: smaller is better; short results pad with -1 / NaN.
    e_ids, e_scores = merge_topk([np.array([[3, 1]])], [np.array([[2.0, 0.5]], dtype=np.float32)], 4, "euclidean")
    assert e_ids.tolist() == [[1, 3, NO_ID, NO_ID]] and np.isnan(e_scores[0, 2:]).all()


def test_bad_input_gets_typed_errors_and_keeps_what_is_stored(data, tmp_path):
    d = str(tmp_path / "s")
    with pytest.raises(lodestone.InvalidArgument, match="shards"):
        write_shards(data.base[:3], d, 4)
    with pytest.raises(lodestone.InvalidArgument, match="kind"):
        write_shards(data.base, d, 2, kind="ivf")
    with pytest.raises(lodestone.InvalidArgument, match="ids"):
        write_shards(data.base[:10], d, 2, ids=np.arange(-1, 9))
    with pytest.raises(lodestone.InvalidArgument, match="neither"):
        write_shards(str(tmp_path / "base.csv"), d, 2)
    with pytest.raises(lodestone.InvalidArgument, match="no shard set"):
        ShardSet.open(str(tmp_path))
    shards = write_shards(data.base, d, 2)
    before = shards.knn(data.queries[:10], K)
    # A second write into the same directory is refused; the set is intact.
    with pytest.raises(lodestone.InvalidArgument, match="already holds"):
        write_shards(data.base[:100], d, 2)
    assert np.array_equal(ShardSet.open(d).knn(data.queries[:10], K)[0], before[0])
    with pytest.raises(lodestone.DimensionMismatch):
        shards.search(0, data.queries[:, :10], K)
    # A shard file cut short or missing is named.
    victim = shards.path(1)
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) - 4096)
    with pytest.raises(lodestone.CorruptFile, match="bytes, the manifest says"):
        ShardSet.open(d)
    os.remove(victim)
    with pytest.raises(lodestone.CorruptFile, match="missing"):
        ShardSet.open(d)
    with open(os.path.join(d, "shards.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(lodestone.CorruptFile, match="JSON"):
        ShardSet.open(d)
