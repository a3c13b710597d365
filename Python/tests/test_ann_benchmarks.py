"""The ann-benchmarks interface (Benchmarks/ann-benchmarks/lodestone/), driven
the way ann-benchmarks drives an algorithm, without an ann-benchmarks checkout.

A stub `ann_benchmarks.algorithms.base.module.BaseANN` (the real class's
defaults) stands in sys.modules, so module.py loads exactly as it does from
`ann_benchmarks/algorithms/lodestone/`. The dataset is an HDF5 file in
ann-benchmarks' format made from the real vectors in Data/. config.yml is
expanded into (constructor, arguments, query argument groups) as
ann-benchmarks' `definitions.py` does, and each definition is run as
`runner.run` runs it: construct, `fit(train)`, then per query argument group
`set_query_arguments(*group)` and every test query through `query(v, k)` or
`batch_query` + `get_batch_results`. Recall is ann-benchmarks' `knn` metric:
distances recomputed from the returned rows, counted against the k-th true
distance + 1e-3.
"""

import importlib
import importlib.machinery
import importlib.util
import itertools
import os
import subprocess
import sys
import time
import types
from multiprocessing.pool import ThreadPool
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ALGORITHM_DIR = REPO / "Benchmarks" / "ann-benchmarks" / "lodestone"
MODULE = "ann_benchmarks.algorithms.lodestone.module"
COUNT = 10  # run.py's default --count
EPSILON = 1e-3  # plotting/metrics.py: knn


class StubBaseANN:
    """ann_benchmarks/algorithms/base/module.py's BaseANN, its defaults only
    (get_memory_usage reads RSS from /proc instead of psutil)."""

    def done(self):
        pass

    def get_memory_usage(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024

    def fit(self, X):
        pass

    def query(self, q, n):
        return []

    def batch_query(self, X, n):
        pool = ThreadPool()
        self.res = pool.map(lambda q: self.query(q, n), X)

    def get_batch_results(self):
        return self.res

    def get_additional(self):
        return {}

    def __str__(self):
        return self.name


def _package(name: str, path=None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = [str(path)] if path else []
    return module


def load_algorithm_module():
    """Puts the stub ann_benchmarks packages in sys.modules and imports
    module.py as `ann_benchmarks.algorithms.lodestone.module`."""
    base = types.ModuleType("ann_benchmarks.algorithms.base.module")
    base.BaseANN = StubBaseANN
    sys.modules.update({
        "ann_benchmarks": _package("ann_benchmarks"),
        "ann_benchmarks.algorithms": _package("ann_benchmarks.algorithms"),
        "ann_benchmarks.algorithms.base": _package("ann_benchmarks.algorithms.base"),
        "ann_benchmarks.algorithms.base.module": base,
        "ann_benchmarks.algorithms.lodestone": _package("ann_benchmarks.algorithms.lodestone", ALGORITHM_DIR),
    })
    return importlib.import_module(MODULE)


@pytest.fixture(scope="module")
def algorithms():
    """module.py, loaded under the stub; sys.modules is restored afterwards."""
    names = ["ann_benchmarks", "ann_benchmarks.algorithms", "ann_benchmarks.algorithms.base",
             "ann_benchmarks.algorithms.base.module", "ann_benchmarks.algorithms.lodestone", MODULE]
    saved = {name: sys.modules.get(name) for name in names}
    try:
        yield load_algorithm_module()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# -- config.yml, expanded as ann_benchmarks/definitions.py does ----------------

def _combinations(args):
    """definitions._generate_combinations: the product of a list's elements
    (a non-list element is one value) or of a dict's values."""
    if isinstance(args, list):
        return [list(x) for x in itertools.product(*[a if isinstance(a, list) else [a] for a in args])]
    flat = [[(k, e) for e in v] if isinstance(v, list) else [(k, v)] for k, v in args.items()]
    return [dict(x) for x in itertools.product(*flat)]


def _argument_lists(run_group, groups_key, list_key):
    """definitions.generate_arg_combinations for one run group."""
    if groups_key in run_group:
        return _combinations([_combinations(g) if isinstance(g, dict) else g for g in run_group[groups_key]])
    return _combinations(run_group[list_key]) if list_key in run_group else []


def definitions(distance: str, dimension: int, point_type: str = "float"):
    """(name, constructor, arguments, query argument groups) of every run
    config.yml defines for `point_type` data under `distance`."""
    config = yaml.safe_load((ALGORITHM_DIR / "config.yml").read_text())[point_type]
    found = []
    for algorithm in config.get("any", []) + config.get(distance, []):
        assert algorithm["module"] == "ann_benchmarks.algorithms." + ALGORITHM_DIR.name
        substitutions = {"@metric": distance, "@dimension": dimension, "@count": COUNT}
        for run_group in algorithm["run_groups"].values():
            query_groups = _argument_lists(run_group, "query_arg_groups", "query_args")
            for group in _argument_lists(run_group, "arg_groups", "args"):
                arguments = list(algorithm.get("base_args", [])) + (group if isinstance(group, list) else [group])
                arguments = [substitutions.get(a, a) if isinstance(a, str) else a for a in arguments]
                found.append((algorithm["name"], algorithm["constructor"], arguments, query_groups))
    return found


# -- the dataset, in ann-benchmarks' HDF5 format -----------------------------

def _make_dataset_module():
    """Benchmarks/ann-benchmarks/make_dataset.py, imported: the tests write
    their data sets with the script's own reader, exact search and writer."""
    spec = importlib.util.spec_from_file_location(
        "make_dataset", REPO / "Benchmarks" / "ann-benchmarks" / "make_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_dataset_module = _make_dataset_module()


def read_fvecs(path: Path) -> np.ndarray:
    """TEXMEX .fvecs: each row is an int32 dimension then float32 values."""
    return make_dataset_module.read_vecs(path, "<f4")


@pytest.fixture(scope="module", params=["angular", "euclidean"])
def dataset(request, tmp_path_factory):
    """An ann-benchmarks dataset file (datasets.write_output's layout) of the
    2,000 Data/ vectors and the 100 Data/ queries. The embeddings are unit
    length, on which cosine, euclidean and dot product rank alike; each row
    is scaled by a factor in [0.5, 2] (as in ann-benchmarks' angular sets,
    whose vectors are not normalized) so that a metric mix-up shows."""
    rng = np.random.default_rng(7)
    train, test = read_fvecs(REPO / "Data" / "base.fvecs"), read_fvecs(REPO / "Data" / "query.fvecs")
    train *= rng.uniform(0.5, 2.0, size=(len(train), 1)).astype(np.float32)
    test *= rng.uniform(0.5, 2.0, size=(len(test), 1)).astype(np.float32)
    neighbors, distances = make_dataset_module.exact_neighbors(train, test, request.param, 100)
    path = tmp_path_factory.mktemp("ann-benchmarks") / f"lodestone-minilm-384-{request.param}.hdf5"
    make_dataset_module.write_dataset(path, train, test, neighbors, distances, request.param)
    return path


# -- runner.run and plotting/metrics.knn --------------------------------------

def distance_function(distance):
    """distance.py's metrics[distance].distance."""
    def norm(a):
        return np.sum(a ** 2) ** 0.5
    if distance == "angular":
        return lambda a, b: 1 - np.dot(a, b) / (norm(a) * norm(b))
    return lambda a, b: norm(a - b)


def knn_recall(true_distances, run_distances, count=COUNT):
    """plotting/metrics.knn: the mean share of returned distances within the
    k-th true distance + epsilon."""
    found = [sum(d <= truth[count - 1] + EPSILON for d in run[:count])
             for truth, run in zip(true_distances, run_distances)]
    return float(np.mean(found)) / count


def dataset_definitions(dataset_path, name=None):
    """main.py: the definitions for a dataset file's point type, distance
    and dimension (only those of algorithm `name` if given)."""
    with h5py.File(dataset_path, "r") as D:
        found = definitions(D.attrs["distance"], int(D.attrs["dimension"]), D.attrs["point_type"])
    return [d for d in found if name is None or d[0] == name]


def answer(algo, X_test, batch):
    """runner.run_individual_query's timed part: (seconds, rows returned)."""
    if batch:
        start = time.time()
        algo.batch_query(X_test, COUNT)
        elapsed = time.time() - start
        return elapsed, list(algo.get_batch_results())
    elapsed, rows = 0.0, []
    for v in X_test:
        start = time.time()
        rows.append(algo.query(v, COUNT))
        elapsed += time.time() - start
    return elapsed, rows


def run_definition(module, definition, dataset_path):
    """runner.run for one definition. ann-benchmarks answers either one
    query at a time or (--batch) as a batch, each in its own process with
    its own fit; here every query argument group is answered both ways on
    one index, so the two can be compared. Returns, per group, its name
    (str(algo)), its query arguments and, per mode, the recall, the QPS and
    the rows returned."""
    _, constructor, arguments, query_groups = definition
    algo = getattr(module, constructor)(*arguments)
    assert not query_groups or hasattr(algo, "set_query_arguments")
    with h5py.File(dataset_path, "r") as D:
        X_train, X_test = np.array(D["train"]), np.array(D["test"])
        distance, true_distances = D.attrs["distance"], np.array(D["distances"])
    dist = distance_function(distance)
    runs = []
    try:
        algo.fit(X_train)
        for query_arguments in query_groups or [[]]:
            if query_arguments:
                algo.set_query_arguments(*query_arguments)
            run = {"name": str(algo), "query_arguments": query_arguments}
            for mode in ("single", "batch"):
                elapsed, rows = answer(algo, X_test, mode == "batch")
                assert len(rows) == len(X_test)
                for r in rows:
                    assert len(r) == len(set(r)), "duplicated candidates"
                    assert all(0 <= int(i) < len(X_train) for i in r), "row index out of range"
                run_distances = [[float(dist(v, X_train[i])) for i in r] for v, r in zip(X_test, rows)]
                run[mode] = {"recall": knn_recall(true_distances, run_distances), "qps": len(X_test) / elapsed,
                             "rows": [[int(i) for i in r] for r in rows]}
            print(f"{Path(dataset_path).stem} {run['name']}: recall {run['single']['recall']:.3f} "
                  f"({run['batch']['recall']:.3f} batch), {run['single']['qps']:,.0f} QPS "
                  f"({run['batch']['qps']:,.0f} batch)")
            runs.append(run)
    finally:
        algo.done()
    return runs


# -- the tests ----------------------------------------------------------------

def test_config_defines_the_hnsw_sweep_the_quantized_walk_and_the_flat_index():
    """The quantized walk has its own algorithm name: the runner and the
    plots draw one best-of curve per name, and it uses ~2.3x the exact
    walk's memory, so it must not hide inside lodestone-hnsw's curve."""
    runs = definitions("angular", 384)
    hnsw = [d for d in runs if d[0] == "lodestone-hnsw"]
    quantized = [d for d in runs if d[0] == "lodestone-hnsw-quantized"]
    assert sorted((d[2][1]["M"], d[2][1]["efConstruction"]) for d in hnsw) == \
        sorted((m, efc) for m in (12, 16, 24, 32) for efc in (200, 500))
    assert all("traversal" not in d[2][1] for d in hnsw)
    assert sorted((d[2][1]["M"], d[2][1]["efConstruction"], d[2][1]["traversal"]) for d in quantized) == \
        [(16, 200, "quantized"), (16, 500, "quantized")]
    for name, constructor, arguments, query_groups in hnsw + quantized:
        assert constructor == "LodestoneHNSW" and arguments[0] == "angular"
        assert query_groups == [[ef] for ef in (10, 20, 40, 80, 120, 200, 400, 600, 800)]
    assert [d for d in runs if d[0] == "lodestone-flat"] == [("lodestone-flat", "LodestoneFlat", ["angular"], [])]
    assert len(runs) == len(hnsw) + len(quantized) + 1
    assert {d[2][0] for d in definitions("euclidean", 384)} == {"euclidean"}


def test_hnsw_single_and_batch_recall(algorithms, dataset):
    hnsw = dataset_definitions(dataset, "lodestone-hnsw") + dataset_definitions(dataset, "lodestone-hnsw-quantized")
    assert len(hnsw) == 10
    for definition in hnsw:
        runs = run_definition(algorithms, definition, dataset)
        names = [run["name"] for run in runs]
        assert len(set(names)) == len(names), "the name must change with the query arguments"
        for run in runs:
            assert f"ef={run['query_arguments'][0]}" in run["name"]
            assert all(len(r) == COUNT for r in run["single"]["rows"])
            assert run["single"]["rows"] == run["batch"]["rows"], "a batch must answer what single queries answer"
        recall = {run["query_arguments"][0]: run["single"]["recall"] for run in runs}
        assert recall[80] >= 0.95, (definition, recall)
        assert recall[800] >= 0.99, (definition, recall)


def test_flat_recall_is_exact(algorithms, dataset):
    [definition] = dataset_definitions(dataset, "lodestone-flat")
    [run] = run_definition(algorithms, definition, dataset)
    assert run["name"] == "Lodestone-Flat()"
    for mode in ("single", "batch"):
        assert run[mode]["recall"] == 1.0
        assert all(len(r) == COUNT for r in run[mode]["rows"])


@pytest.mark.parametrize("constructor, arguments", [("LodestoneHNSW", [{"M": 16, "efConstruction": 200}]),
                                                    ("LodestoneFlat", [])])
def test_padding_is_stripped_when_the_index_holds_fewer_than_n(algorithms, constructor, arguments):
    X = read_fvecs(REPO / "Data" / "base.fvecs")
    algo = getattr(algorithms, constructor)("angular", *arguments)
    try:
        algo.fit(X[:5])
        result = algo.query(X[7], COUNT)
        assert sorted(int(i) for i in result) == [0, 1, 2, 3, 4]
        algo.batch_query(X[5:9], COUNT)
        assert [sorted(int(i) for i in r) for r in algo.get_batch_results()] == [[0, 1, 2, 3, 4]] * 4
    finally:
        algo.done()


@pytest.mark.parametrize("metric", ["hamming", "jaccard"])
def test_unsupported_metrics_are_refused(algorithms, metric):
    with pytest.raises(NotImplementedError):
        algorithms.LodestoneFlat(metric)
    with pytest.raises(NotImplementedError):
        algorithms.LodestoneHNSW(metric, {"M": 16, "efConstruction": 200})


def test_import_loads_no_library_and_a_forked_worker_runs(tmp_path):
    """run.py --local imports the module and constructs in the parent, then
    forks the worker that fits and queries: nothing native may be loaded
    before the fork."""
    script = f"""
import multiprocessing, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np
import test_ann_benchmarks as t
m = t.load_algorithm_module()
m.LodestoneHNSW("angular", {{"M": 16, "efConstruction": 200}})
m.LodestoneFlat("euclidean")
assert "lodestone" not in sys.modules, "importing or constructing loaded lodestone"

def worker(queue):
    X = t.read_fvecs(t.REPO / "Data" / "base.fvecs")[:200]
    algo = m.LodestoneHNSW("angular", {{"M": 16, "efConstruction": 200}})
    algo.fit(X)
    algo.set_query_arguments(40)
    queue.put([int(i) for i in algo.query(X[3], 5)])
    algo.done()

queue = multiprocessing.get_context("fork").Queue()
p = multiprocessing.get_context("fork").Process(target=worker, args=(queue,))
p.start()
print(queue.get(timeout=120)[0])
p.join(120)
sys.exit(p.exitcode)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3"], out.stdout


# -- make_dataset.py: our .fvecs sets as ann-benchmarks data sets -------------

MAKE_DATASET = REPO / "Benchmarks" / "ann-benchmarks" / "make_dataset.py"
# The start of a real ann_benchmarks/datasets.py's registry, as the script finds it.
FAKE_DATASETS_PY = '''import h5py


def random_float(out_fn, n_dims, n_samples, centers, distance):
    raise AssertionError("not called")


DATASETS = {
    "glove-25-angular": lambda out_fn: None,
    "random-xs-20-angular": lambda out_fn: random_float(out_fn, 20, 10000, 100, "angular"),
}

DATASETS.update({f"dbpedia-openai-{n}k-angular": (lambda out_fn: None) for n in (100, 200)})
'''


def make_dataset(checkout, *arguments):
    out = subprocess.run([sys.executable, str(MAKE_DATASET), "--ann-benchmarks", str(checkout), *map(str, arguments)],
                         capture_output=True, text=True, timeout=300)
    return out


def registered(checkout):
    """The DATASETS dict of the checkout's (patched) datasets.py, executed."""
    namespace = {}
    exec(compile((checkout / "ann_benchmarks" / "datasets.py").read_text(), "datasets.py", "exec"), namespace)
    return namespace["DATASETS"]


@pytest.fixture
def checkout(tmp_path):
    """A fake ann-benchmarks checkout: only ann_benchmarks/datasets.py."""
    (tmp_path / "ann_benchmarks").mkdir()
    (tmp_path / "ann_benchmarks" / "datasets.py").write_text(FAKE_DATASETS_PY)
    return tmp_path


def test_make_dataset_writes_the_runners_layout_with_exact_ground_truth(checkout):
    """Data/ without its ground truth: the neighbours computed here are
    groundtruth.ivecs's, the distances ann-benchmarks' angular distance."""
    data = REPO / "Data"
    out = make_dataset(checkout, "--base", data / "base.fvecs", "--queries", data / "query.fvecs",
                       "--distance", "angular", "--name", "lodestone-sample-384-angular")
    assert out.returncode == 0, out.stderr
    path = checkout / "data" / "lodestone-sample-384-angular.hdf5"
    assert f"wrote {path}" in out.stdout
    base, queries = read_fvecs(data / "base.fvecs"), read_fvecs(data / "query.fvecs")
    truth = np.fromfile(data / "groundtruth.ivecs", dtype=np.int32).reshape(len(queries), -1)[:, 1:]
    with h5py.File(path, "r") as f:
        assert dict(f.attrs) == {"type": "dense", "distance": "angular", "dimension": 384, "point_type": "float"}
        assert sorted(f) == ["distances", "neighbors", "test", "train"]
        assert f["train"].dtype == np.float32 and np.array_equal(f["train"][:], base)
        assert f["test"].dtype == np.float32 and np.array_equal(f["test"][:], queries)
        neighbors, distances = f["neighbors"][:], f["distances"][:]
    assert neighbors.shape == distances.shape == (len(queries), 100)
    assert neighbors.dtype.kind == "i" and distances.dtype == np.float64
    assert np.array_equal(neighbors[:, :10], truth[:, :10]), "exact top-10 differs from Data/groundtruth.ivecs"
    assert np.all(np.diff(distances, axis=1) >= 0)
    expected = [[float(distance_function("angular")(q.astype(np.float64), base[i].astype(np.float64)))
                 for i in row[:10]] for q, row in zip(queries, neighbors)]
    np.testing.assert_allclose(distances[:, :10], expected, atol=1e-9)

    # The given ground truth gives the same file's neighbours; --count trims.
    out = make_dataset(checkout, "--base", data / "base.fvecs", "--queries", data / "query.fvecs",
                       "--groundtruth", data / "groundtruth.ivecs", "--distance", "euclidean",
                       "--name", "lodestone-sample-384-euclidean", "--count", "10")
    assert out.returncode == 0, out.stderr
    with h5py.File(checkout / "data" / "lodestone-sample-384-euclidean.hdf5", "r") as f:
        assert f.attrs["distance"] == "euclidean"
        assert np.array_equal(f["neighbors"][:], truth[:, :10])
        # Unit vectors: L2 = sqrt(2 * angular distance).
        np.testing.assert_allclose(f["distances"][:], np.sqrt(2 * distances[:, :10]), atol=1e-6)


def test_make_dataset_registers_the_name_once(checkout):
    data = REPO / "Data"
    files = ["--base", data / "base.fvecs", "--queries", data / "query.fvecs",
             "--groundtruth", data / "groundtruth.ivecs", "--distance", "angular"]
    datasets_py = checkout / "ann_benchmarks" / "datasets.py"
    out = make_dataset(checkout, *files, "--name", "sample-a-384-angular")
    assert out.returncode == 0, out.stderr
    patched = datasets_py.read_text()
    assert patched.startswith(FAKE_DATASETS_PY), "the original file must stay as it was"
    appended = patched[len(FAKE_DATASETS_PY):].strip("\n").splitlines()
    # Every appended line is printed.
    assert f"patched {datasets_py}: appended {len(appended)} lines:" in out.stdout
    assert [line[4:] for line in out.stdout.splitlines() if line.startswith("  | ")] == appended
    assert appended[-1] == 'DATASETS["sample-a-384-angular"] = _lodestone_make_dataset'

    # Again: nothing appended.
    out = make_dataset(checkout, *files, "--name", "sample-a-384-angular")
    assert out.returncode == 0, out.stderr
    assert datasets_py.read_text() == patched
    assert "not patched" in out.stdout

    # A second name: one line more, the function not repeated.
    out = make_dataset(checkout, *files, "--name", "sample-b-384-angular")
    assert out.returncode == 0, out.stderr
    assert datasets_py.read_text() == patched + 'DATASETS["sample-b-384-angular"] = _lodestone_make_dataset\n'

    # The runner's view: both names are --dataset choices beside the harness's own;
    # a missing file is explained, not downloaded or generated.
    DATASETS = registered(checkout)
    assert {"glove-25-angular", "random-xs-20-angular", "dbpedia-openai-100k-angular",
            "sample-a-384-angular", "sample-b-384-angular"} <= set(DATASETS)
    with pytest.raises(RuntimeError, match="generated by make_dataset.py"):
        DATASETS["sample-a-384-angular"]("data/sample-a-384-angular.hdf5")

    # The harness's own data sets are never replaced.
    out = make_dataset(checkout, *files, "--name", "glove-25-angular")
    assert out.returncode != 0 and "already defines" in out.stderr
    assert datasets_py.read_text().count("glove-25-angular") == 1


def test_make_dataset_refuses_ground_truth_of_another_distance(checkout, tmp_path):
    """A ground truth file not ranked by the chosen distance would make every
    recall wrong: Data/'s cosine truth on vectors scaled row by row is not a
    euclidean ranking."""
    base = read_fvecs(REPO / "Data" / "base.fvecs")
    scaled = base * np.random.default_rng(3).uniform(0.5, 2.0, size=(len(base), 1)).astype(np.float32)
    path = tmp_path / "scaled.fvecs"
    np.hstack([np.full((len(scaled), 1), scaled.shape[1], dtype=np.int32), scaled.view(np.int32)]).tofile(path)
    out = make_dataset(checkout, "--base", path, "--queries", REPO / "Data" / "query.fvecs",
                       "--groundtruth", REPO / "Data" / "groundtruth.ivecs", "--distance", "euclidean",
                       "--name", "scaled-384-euclidean")
    assert out.returncode != 0 and "not ranked by euclidean" in out.stderr
    assert not (checkout / "data" / "scaled-384-euclidean.hdf5").exists()
