"""Faults: SIGKILL during concurrent upserts loses no acknowledged write;
bad HTTP (oversized, truncated, garbage, slow) gets 4xx or a closed
connection, and the server keeps serving everyone else."""

import http.client
import json
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from conftest import Server


def post(port, path, body, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def make_index(port, name, dim):
    status, body = post(port, "/indexes", {"name": name, "dimension": dim, "metric": "cosine",
                                           "spec": {"serverless": {"cloud": "aws", "region": "us-east-1"}}})
    assert status == 201, body


def test_sigkill_during_concurrent_upserts_loses_no_acknowledged_write(data):
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "db", Path(tmp) / "log").start()
        make_index(server.port, "crash", 384)
        acknowledged, stop = [], threading.Event()
        lock = threading.Lock()

        def writer(w):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            rng = np.random.default_rng(w)
            n = 0
            while not stop.is_set():
                ids = [f"w{w}-{n + i}" for i in range(20)]
                rows = data.base[rng.integers(0, len(data.base), 20)]
                try:
                    status, _ = post(server.port, "/_data/crash/vectors/upsert",
                                     {"vectors": [{"id": i, "values": v.tolist(), "metadata": {"w": w}}
                                                  for i, v in zip(ids, rows)]}, conn)
                except (OSError, http.client.HTTPException):
                    return  # the server died mid-request: not acknowledged
                if status == 200:
                    with lock:
                        acknowledged.extend(ids)
                n += 20

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        server.stop(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
        assert len(acknowledged) > 100
        server.start()
        try:
            missing = []
            for start in range(0, len(acknowledged), 200):
                chunk = acknowledged[start:start + 200]
                c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                c.request("GET", "/_data/crash/vectors/fetch?" + "&".join("ids=" + i for i in chunk))
                got = json.loads(c.getresponse().read())["vectors"]
                missing += [i for i in chunk if i not in got]
            assert missing == [], f"{len(missing)} acknowledged writes lost"
        finally:
            server.stop()


def raw_exchange(port, payload, read=True, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                length = [int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")]
                if length and len(rest) >= length[0]:
                    break
        return out
    finally:
        s.close()


def status_of(reply):
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1") else None


def test_bad_http_gets_4xx_and_the_server_keeps_serving(data):
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "db", Path(tmp) / "log").start("--max-body-bytes", "100000")
        port = server.port
        try:
            make_index(port, "faults", 384)
            q = {"topK": 3, "vector": data.base[0].tolist()}

            def healthy():
                return post(port, "/_data/faults/query", q)[0] == 200

            # A declared body over the limit: 413 before reading it.
            reply = raw_exchange(port, b"POST /_data/faults/vectors/upsert HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{")
            assert status_of(reply) == 413, reply[:200]
            # A chunked body that grows past the limit: 413.
            chunk = b'{"vectors": [' + b"1," * 30000
            payload = (b"POST /_data/faults/vectors/upsert HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n")
            assert status_of(raw_exchange(port, payload)) == 413
            # A body shorter than its Content-Length, then the client goes away.
            raw_exchange(port, b"POST /_data/faults/query HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"top",
                         read=False)
            # Not HTTP at all.
            reply = raw_exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            assert reply == b"" or status_of(reply) == 400
            # Percent-escapes that are not UTF-8, and a bad escape.
            assert status_of(raw_exchange(port, b"GET /indexes/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n")) == 400
            assert status_of(raw_exchange(port, b"GET /indexes/%zz HTTP/1.1\r\nHost: x\r\n\r\n")) in (400, 404)
            # Deep nesting and huge numbers in JSON.
            assert post(port, "/_data/faults/query", json.loads("[" * 100 + "]" * 100))[0] == 400
            status, _ = post(port, "/_data/faults/vectors/upsert",
                             {"vectors": [{"id": "big", "values": [1e300] * 384}]})
            assert status == 400
            # A slow client holding a half-sent request does not block others.
            slow = socket.create_connection(("127.0.0.1", port))
            slow.sendall(b"POST /_data/faults/query HTTP/1.1\r\nHost: x\r\nContent-Le")
            assert healthy()
            # Many concurrent connections at once.
            results = []

            def client():
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for _ in range(10):
                    results.append(post(port, "/_data/faults/query", q, conn)[0])

            threads = [threading.Thread(target=client) for _ in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert results == [200] * 320
            slow.close()
            assert healthy()
            assert server.process.poll() is None
        finally:
            server.stop()
