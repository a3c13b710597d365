"""Pinecone's own Python SDK (and LlamaIndex) against `lodestone serve`.

Each test session starts the server from the release build
($LODESTONE_BIN, else Tools/.build/release/lodestone) on a free loopback port with
a fresh database, and stops it with SIGTERM at the end. `Scripts/sdk-test`
runs this suite in two virtual environments: pinecone 10.x (API 2026-07)
and llama-index-vector-stores-pinecone, which pins pinecone 9.x (API
2025-10), so both request and response families are exercised.
"""

import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The real-data loader and exact search of the Python package's tests.
_spec = importlib.util.spec_from_file_location("lodestone_test_data", REPO / "Python" / "tests" / "conftest.py")
test_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_data)
exact_top_k = test_data.exact_top_k
# Pinecone's filter semantics, written independently of the engine (the benchmarks' evaluator).
_spec = importlib.util.spec_from_file_location("lodestone_peers", REPO / "Benchmarks" / "peers.py")
_peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_peers)
pinecone_match = _peers.pinecone_match


@pytest.fixture(scope="session")
def data():
    return test_data._load()


class Server:
    """`lodestone serve` on a free port over `db`; restartable."""

    def __init__(self, db: Path, log: Path):
        self.db, self.log = db, log
        self.binary = os.environ.get("LODESTONE_BIN") or str(REPO / ".build" / "release" / "lodestone")
        self.process = None
        self.port = None

    def start(self, *extra):
        log = open(self.log, "a")
        self.process = subprocess.Popen(
            [self.binary, "serve", "--db", str(self.db), "--port", str(self.port or 0), "--log-level", "warning", *extra],
            stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.process.stdout.readline()
        assert "listening on" in line, f"the server did not start: {line!r}; see {self.log}"
        self.port = int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            code = self.process.wait(timeout=60)
            assert sig == signal.SIGKILL or code == 0, f"the server exited with {code}; see {self.log}"
        self.process = None

    def restart(self, sig=signal.SIGTERM):
        self.stop(sig)
        return self.start()


@pytest.fixture(scope="session")
def server():
    with tempfile.TemporaryDirectory(prefix="lodestone-sdk-") as tmp:
        s = Server(Path(tmp) / "db", Path(tmp) / "server.log").start()
        try:
            yield s
        finally:
            s.stop()
            if os.environ.get("CI"):
                print(Path(tmp, "server.log").read_text()[-4000:])


@pytest.fixture()
def pc(server):
    from pinecone import Pinecone
    return Pinecone(api_key="local", host=server.url)


_counter = [0]


@pytest.fixture()
def index_name(pc):
    """A fresh index name, deleted after the test (protection lifted)."""
    _counter[0] += 1
    name = f"t{os.getpid()}-{_counter[0]}"
    yield name
    if pc.has_index(name):
        pc.configure_index(name, deletion_protection="disabled")
        pc.delete_index(name)
