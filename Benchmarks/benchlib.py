"""Helpers shared by the comparison scripts in this folder."""
import json, os, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "pypi-minilm")


def bench_env():
    """The environment for benchmark runs: without OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE, which some machines set for old OpenBLAS builds and
    which slow a current one several-fold (benchmarks only; tests keep them)."""
    return {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def build_lodestone():
    """Builds the lodestone command in release mode (no optimisation flags:
    what a library user gets; the Tools package's command, built as
    Scripts/setup.sh builds it) and returns its path."""
    subprocess.run(["swift", "build", "-c", "release", "--package-path", "Tools", "--static-swift-stdlib",
                    "--product", "lodestone"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return os.path.join(ROOT, "Tools", ".build", "release", "lodestone")


def run_json(cmd, env):
    """Runs a command and returns the JSON objects it printed, one per line."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]
