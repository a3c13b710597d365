"""HNSWIndex and FlatIndex from Python, checked against numpy brute force
on real embeddings."""

import subprocess
import sys
import threading

import numpy as np
import pytest

import lodestone
from conftest import exact_top_k

MISSING = np.iinfo(np.uint64).max


def recall(ids: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(ids[i, :k].tolist()) & set(truth[i, :k].tolist())) / k for i in range(len(ids))]))


def test_flat_is_exact_on_real_data(data):
    ix = lodestone.FlatIndex(data.base.shape[1], "cosine")
    ix.add(np.arange(len(data.base)), data.base)
    assert len(ix) == len(data.base)
    ids, scores = ix.search(data.queries, 10, threads=2)
    assert ids.shape == (len(data.queries), 10) and ids.dtype == np.uint64 and scores.dtype == np.float32
    assert np.array_equal(ids, data.truth[:, :10].astype(np.uint64)), data.name
    rows, exact = exact_top_k(data.base, data.queries, 10)
    assert np.allclose(scores, exact, atol=1e-5)
    # One query at a time returns exactly the batch's answers.
    for i in range(0, len(data.queries), 7):
        one_ids, one_scores = ix.search(data.queries[i], 10)
        assert one_ids.shape == (10,)
        assert np.array_equal(one_ids, ids[i]) and np.array_equal(one_scores, scores[i])


def test_hnsw_recall_and_batch_equals_single(data):
    ix = lodestone.HNSWIndex(data.base.shape[1], "cosine", m=16, ef_construction=100)
    ix.add(np.arange(len(data.base), dtype=np.uint64), data.base, threads=2)
    ids, scores = ix.search(data.queries, 10, ef=64, threads=2)
    assert recall(ids, data.truth) >= 0.95
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores best first"
    for i in range(0, len(data.queries), 9):
        one_ids, one_scores = ix.search(data.queries[i], 10, ef=64)
        assert np.array_equal(one_ids, ids[i]) and np.array_equal(one_scores, scores[i])
    assert ix.memory_bytes > len(data.base) * data.base.shape[1] * 4


@pytest.mark.parametrize("traversal", ["quantized", "compact"])
def test_quantized_and_compact_traversals_recall_persist_and_writes(tmp_path, data, traversal):
    """The quantized and compact walks against brute force, through persist, open and writes."""
    ix = lodestone.HNSWIndex(data.base.shape[1], "cosine", m=16, ef_construction=100, traversal=traversal)
    ix.add(np.arange(len(data.base), dtype=np.uint64), data.base, threads=2)
    rows, exact = exact_top_k(data.base, data.queries, 10)
    ids, scores = ix.search(data.queries, 10, ef=96, threads=2)
    assert recall(ids, rows) >= 0.95
    # Scores are exact, not estimates: each equals the brute-force score of its id.
    full = data.queries @ data.base.T / np.linalg.norm(data.base, axis=1)[None, :]
    full /= np.linalg.norm(data.queries, axis=1)[:, None]
    assert np.allclose(scores, np.take_along_axis(full, ids.astype(np.int64), axis=1), atol=1e-4)
    path = tmp_path / "quantized.lodestone"
    ix.persist(str(path))
    opened = lodestone.open_index(str(path))
    again = opened.search(data.queries, 10, ef=96, threads=2)
    assert np.array_equal(again[0], ids) and np.array_equal(again[1], scores)
    opened.remove(int(ids[0, 0]))
    assert int(ids[0, 0]) not in opened.search(data.queries[0], 10, ef=96)[0].tolist()
    with pytest.raises(lodestone.InvalidArgument, match="traversal"):
        lodestone.HNSWIndex(3, "cosine", traversal="fast")


@pytest.mark.parametrize("metric", ["euclidean", "dotproduct", "cosine"])
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_metrics_against_float64(metric, kind):
    rng = np.random.default_rng(3)
    base = (rng.standard_normal((1500, 24)) * rng.uniform(0.5, 2, (1500, 1))).astype(np.float32)
    queries = rng.standard_normal((40, 24)).astype(np.float32)
    ix = lodestone.FlatIndex(24, metric) if kind == "flat" else lodestone.HNSWIndex(24, metric, m=12)
    ix.add(np.arange(1500) * 3 + 7, base)
    ids, scores = ix.search(queries, 10, ef=200)
    rows, exact = exact_top_k(base, queries, 10, metric)
    keys = rows * 3 + 7
    if kind == "flat":
        assert np.array_equal(ids, keys.astype(np.uint64))
        assert np.allclose(scores, exact, rtol=1e-4, atol=1e-4)
    else:
        assert recall(ids, keys) >= 0.95


def test_filter_ids_restricts_results_exactly(data):
    ix = lodestone.FlatIndex(data.base.shape[1], "cosine")
    ix.add(np.arange(len(data.base)), data.base)
    allowed = np.arange(0, len(data.base), 7)
    ids, scores = ix.search(data.queries[:20], 10, filter_ids=allowed)
    rows, _ = exact_top_k(data.base[allowed], data.queries[:20], 10)
    assert np.array_equal(ids, allowed[rows].astype(np.uint64))
    hnsw = lodestone.HNSWIndex(data.base.shape[1], "cosine")
    hnsw.add(np.arange(len(data.base)), data.base, threads=2)
    few = np.array([3, 5, 11])
    got, _, counts = hnsw.search(data.queries[:5], 10, filter_ids=few, return_counts=True)
    assert np.all(counts == 3)
    assert np.all(np.isin(got[:, :3], few)) and np.all(got[:, 3:] == MISSING)


def test_persist_open_round_trip(tmp_path, data):
    for kind in ("flat", "hnsw"):
        ix = lodestone.FlatIndex(384, "cosine") if kind == "flat" else lodestone.HNSWIndex(384, "cosine")
        ix.add(np.arange(len(data.base)), data.base, threads=2)
        path = tmp_path / f"{kind}.lodestone"
        ix.persist(str(path))
        before = ix.search(data.queries[:30], 10, ef=48)
        opened = lodestone.open_index(str(path))
        assert type(opened) is type(ix) and len(opened) == len(ix) and opened.metric == "cosine"
        after = opened.search(data.queries[:30], 10, ef=48)
        assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
        np.testing.assert_allclose(opened.get(5), ix.get(5))
        opened.add([10**9], data.queries[:1])  # an opened index still takes writes
        assert opened.search(data.queries[0], 1)[0][0] == 10**9


def test_upsert_remove_and_small_index():
    ix = lodestone.HNSWIndex(3, "euclidean")
    ix.add([1, 2], [[0, 0, 0], [1, 1, 1]])
    ix.upsert([2, 3], [[5, 5, 5], [2, 2, 2]])
    assert len(ix) == 3 and np.allclose(ix.get(2), [5, 5, 5])
    assert ix.remove([1, 42]) == 1 and len(ix) == 2
    ids, scores, counts = ix.search([0, 0, 0], 5, return_counts=True)
    assert counts == 2 and ids[:2].tolist() == [3, 2] and ids[2] == MISSING and np.isnan(scores[2])


def test_bad_input_is_a_typed_error_and_changes_nothing():
    ix = lodestone.FlatIndex(3, "cosine")
    with pytest.raises(lodestone.EmptyIndex):
        ix.search([1, 0, 0], 1)
    ix.add([1], [[1, 0, 0]])
    with pytest.raises(lodestone.DuplicateKey):
        ix.add([1], [[0, 1, 0]])
    with pytest.raises(lodestone.DuplicateKey):
        ix.add([5, 5], [[0, 1, 0], [0, 0, 1]])
    with pytest.raises(lodestone.DimensionMismatch):
        ix.add([2], [[1, 2]])
    with pytest.raises(lodestone.ZeroVector):
        ix.add([2, 3], [[0, 1, 0], [0, 0, 0]])
    with pytest.raises(lodestone.NonFiniteValue):
        ix.add([2], [[0, np.nan, 1]])
    with pytest.raises(lodestone.InvalidArgument, match="k"):
        ix.search([1, 0, 0], 0)
    with pytest.raises(lodestone.InvalidArgument, match="threads"):
        ix.search([1, 0, 0], 1, threads=0)
    with pytest.raises(lodestone.InvalidArgument, match="ids"):
        ix.add([2, 3], [[0, 1, 0]])
    with pytest.raises(lodestone.InvalidArgument, match="metric"):
        lodestone.FlatIndex(3, "manhattan")
    with pytest.raises(lodestone.InvalidArgument, match="m"):
        lodestone.HNSWIndex(3, "cosine", m=1)
    with pytest.raises(lodestone.KeyNotFound):
        ix.get(99)
    with pytest.raises(lodestone.CorruptFile if False else lodestone.LodestoneError):
        lodestone.open_index("/nonexistent/file.lodestone")
    assert len(ix) == 1 and np.allclose(ix.get(1), [1, 0, 0])
    # ValueError and KeyError still catch them.
    with pytest.raises(ValueError):
        ix.add([1], [[1, 0, 0]])
    ix.close()
    with pytest.raises(lodestone.IndexClosed):
        ix.search([1, 0, 0], 1)


def test_threads_search_concurrently(data):
    ix = lodestone.HNSWIndex(384, "cosine")
    ix.add(np.arange(len(data.base)), data.base, threads=2)
    expected = ix.search(data.queries, 10, ef=32)[0]
    errors = []

    def worker(offset):
        for i in range(offset, len(data.queries), 4):
            if not np.array_equal(ix.search(data.queries[i], 10, ef=32)[0], expected[i]):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_import_loads_nothing_native_and_starts_no_thread():
    code = (
        "import threading, lodestone\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libLodestoneC' not in maps and 'libswiftCore' not in maps, 'native code loaded at import'\n"
        "assert threading.active_count() == 1\n"
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import numpy as np\n"
        "    ix = lodestone.FlatIndex(2, 'euclidean'); ix.add([7], [[1, 2]])\n"
        "    os._exit(0 if ix.search([1, 2], 1)[0][0] == 7 else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert status == 0, status\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(not __import__("os").environ.get("LODESTONE_EXPECT_INSTALLED"), reason="run by Scripts/python-test")
def test_installed_package_bundles_its_library():
    info = lodestone.library_info()
    assert "site-packages" in info["path"] and info["path"].endswith("lodestone/_lib/libLodestoneC.so"), info
    # The library's release number (LodestoneVersion) is the package's.
    import importlib.metadata
    assert info["version"] == importlib.metadata.version("lodestone"), info
    # ABI 4: text search (lds_db_create_text_index, lds_index_query_text, lds_index_text_field).
    assert info["abi"] == 4 and info["kernel"] in ("avx2", "avx512", "neon", "portable")


def test_close_while_other_threads_search_is_safe(data):
    """close() on one thread while others search: they finish or get IndexClosed; nothing crashes."""
    import sys
    ix = lodestone.FlatIndex(384, "cosine")
    ix.add(np.arange(len(data.base)), data.base)
    outcomes = {"ok": 0, "closed": 0, "other": []}
    start = threading.Event()

    def worker():
        start.wait()
        for i in range(2000):
            try:
                ix.search(data.queries[i % len(data.queries)], 5)
                outcomes["ok"] += 1
            except lodestone.IndexClosed:
                outcomes["closed"] += 1
                return
            except Exception as e:  # pragma: no cover - a failure to report
                outcomes["other"].append(repr(e))
                return

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        start.set()
        ix.close()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert outcomes["other"] == [] and outcomes["closed"] >= 1
    with pytest.raises(lodestone.IndexClosed):
        len(ix)


def test_filter_ids_with_huge_keys_and_empty_filters(data):
    """Keys far beyond the index's size take the exact subset path (no
    giant bitset); an empty filter still checks the query."""
    import resource
    for kind in ("flat", "hnsw"):
        ix = lodestone.FlatIndex(384, "cosine") if kind == "flat" else lodestone.HNSWIndex(384, "cosine")
        keys = np.arange(500, dtype=np.uint64) * np.uint64(2**40)
        ix.add(keys, data.base[:500])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        allowed = keys[::7]
        ids, scores, counts = ix.search(data.queries[:3], 10, filter_ids=np.append(allowed, np.uint64(2**63)),
                                        return_counts=True)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
        rows, _ = exact_top_k(data.base[:500][::7], data.queries[:3], 10)
        assert np.all(counts == 10) and np.array_equal(ids, allowed[rows])
        with pytest.raises(lodestone.NonFiniteValue):
            ix.search(np.full(384, np.nan, np.float32), 3, filter_ids=[])
        empty_ids, _, empty_counts = ix.search(data.queries[0], 3, filter_ids=[], return_counts=True)
        assert empty_counts == 0 and np.all(empty_ids == MISSING)


def test_library_outlives_its_handle():
    """Freeing the library's cffi handle (as the interpreter does when it
    exits) must not unload it: worker threads of a parallel build stay parked
    in the Swift runtime and crashed (SIGSEGV) when they woke in unmapped code."""
    script = """
import gc, time
import numpy as np
import lodestone
from lodestone import _native
x = np.random.default_rng(1).standard_normal((4000, 64)).astype(np.float32)
ix = lodestone.HNSWIndex(64, "cosine", m=8, ef_construction=40)
ix.add(np.arange(4000, dtype=np.uint64), x, threads=2)
del ix
_native._state.clear()
gc.collect()
time.sleep(8)  # libdispatch retires idle workers after about 5 s
print("survived")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "survived" in run.stdout, (run.returncode, run.stderr[-2000:])
