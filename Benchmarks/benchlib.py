"""Helpers shared by the comparison scripts in this folder."""
import json, os, shutil, subprocess, time

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


def timed_child(cmd, env, timeout=None, watch=None):
    """Runs cmd; returns (stdout, seconds, peak RSS of that process, peak extra disk bytes used in `watch`),
    or None when it outlived `timeout` seconds (then it is killed).

    The peak RSS comes from GNU time (Debian package `time`): on Linux a
    child's own rusage starts from its parent's peak (exec keeps it), and a
    script holds more than a small command does.
    """
    import tempfile, threading
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)
        disk = {"base": shutil.disk_usage(watch or "/").used, "peak": 0}
        done = threading.Event()

        def poll():
            while not done.wait(1.0):
                disk["peak"] = max(disk["peak"], shutil.disk_usage(watch or "/").used - disk["base"])
        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.communicate()
            return None
        finally:
            done.set()
        seconds = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
        peak = int(rss.read().strip().splitlines()[-1]) * 1024
    return out, seconds, peak, disk["peak"]


def pick(sweep, target):
    """The cheapest point whose recall reaches the target (else the best)."""
    for s in sweep:
        if s["recall"] >= target:
            return s
    return max(sweep, key=lambda s: s["recall"])
