#!/usr/bin/env python3
"""End-to-end check of the example service (CI runs it; see README.md here).

Starts the built SemanticSearch binary on a fresh database, then checks:
results of concurrent queries (unfiltered and filtered) against exact
float64 answers; that writes held in a slow fdatasync
(LODESTONE_IO_SYNC_DELAY_MS) leave queries flowing; that bad input gets a
4xx; the Prometheus metrics; that SIGTERM persists and exits 0; and that a
restart maps the persisted index and still holds every acknowledged write.
Needs numpy. Exits non-zero on the first failed check.
"""
import argparse, base64, http.client, json, os, re, signal, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def fvecs(path, dtype="<f4"):
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view(dtype)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection per thread."""
    local = threading.local()

    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        try:
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read()
        except (http.client.HTTPException, OSError):
            self.local.conn = None
            raise


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        sys.exit(1)


def start(binary, args, env, log_path):
    log = open(log_path, "ab")
    proc = subprocess.Popen([binary] + args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc


def wait_healthy(client, proc, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if client.call("GET", "/health")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop(proc, seconds=120):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--data", required=True, help="directory with (small_)base.fvecs, base_meta.jsonl, query.fvecs")
    p.add_argument("--small", action="store_true")
    p.add_argument("--db", required=True, help="a fresh directory for the index")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--log", default="/tmp/semantic-search-check.log")
    a = p.parse_args()
    prefix = "small_" if a.small else ""
    base = fvecs(os.path.join(a.data, prefix + "base.fvecs")).astype(np.float64)
    queries = fvecs(os.path.join(a.data, prefix + "query.fvecs"))[: a.queries]
    meta = [json.loads(line) for line in open(os.path.join(a.data, prefix + "base_meta.jsonl"))]
    ids = [m["id"] for m in meta]
    base /= np.linalg.norm(base, axis=1, keepdims=True)

    port = free_port()
    args = ["--data", a.data, "--db", a.db, "--port", str(port), "--log-level", "info"] + (["--small"] if a.small else [])
    env = dict(os.environ, LODESTONE_IO_SYNC_DELAY_MS="150")  # a slow disk: every log sync takes 150 ms
    open(a.log, "wb").close()
    t0 = time.time()
    proc = start(a.binary, args, env, a.log)
    client = Client(port)
    check(wait_healthy(client, proc, 600), f"started and built the index of {len(ids)} records in {time.time() - t0:.1f} s")

    # Exact answers (float64), unfiltered and under three filters.
    filters = {
        "none": (None, lambda m: True),
        "recent": ({"year": {"$gte": 2025}}, lambda m: m["year"] is not None and m["year"] >= 2025),
        "popular": ({"popular": {"$eq": True}}, lambda m: m["popular"] is True),
        "y2019_long": ({"$and": [{"year": {"$eq": 2019}}, {"words": {"$gte": 10}}]},
                       lambda m: m["year"] == 2019 and m["words"] >= 10),
    }

    def ask(q, flt, path="/search"):
        body = {"vectorBase64": base64.b64encode(queries[q].astype("<f4").tobytes()).decode(), "topK": 10,
                "includeMetadata": False}
        if flt is not None:
            body["filter"] = flt
        status, out = client.call("POST", path, body)
        assert status == 200, (status, out)
        return [m["id"] for m in json.loads(out)["matches"]]

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for name, (flt, passes) in filters.items():
            rows = np.array([i for i, m in enumerate(meta) if passes(m)])
            scores = queries.astype(np.float64) @ base[rows].T
            exact = [[ids[rows[j]] for j in np.argsort(-s, kind="stable")[:10]] for s in scores]
            got = list(pool.map(lambda q: ask(q, flt), range(len(queries))))
            sent += len(queries)
            recall = np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact) if e])
            check(recall >= 0.9, f"{name}: {len(rows)} matching records, recall@10 {recall:.3f} over {len(queries)} "
                                 f"queries from 8 threads (>= 0.9 against exact float64)")

    # Writes held in 150 ms syncs while queries keep flowing.
    stop_at = time.time() + 3
    write_times, query_times, written = [], [], []

    def writer(w):
        i = 0
        while time.time() < stop_at:
            rid = f"check-{w}-{i}"
            t = time.time()
            status, out = client.call("POST", "/documents",
                                      {"records": [{"id": rid, "values": queries[i % len(queries)].tolist(),
                                                    "metadata": {"year": 2026, "source": "check"}}]})
            assert status == 200, (status, out)
            write_times.append(time.time() - t)
            written.append(rid)
            i += 1

    def querier(w):
        q = w
        while time.time() < stop_at:
            t = time.time()
            ask(q % len(queries), None)
            query_times.append(time.time() - t)
            q += 4

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda f: f[0](f[1]), [(writer, w) for w in range(4)] + [(querier, w) for w in range(4)]))
    sent += len(query_times)
    p99 = sorted(query_times)[int(0.99 * (len(query_times) - 1))]
    check(min(write_times) >= 0.14, f"{len(written)} writes each held >= 150 ms in the log's sync "
                                    f"(median {1e3 * np.median(write_times):.0f} ms)")
    check(len(query_times) > 200 and p99 < 0.1,
          f"meanwhile {len(query_times)} queries answered, p99 {1e3 * p99:.1f} ms (< 100 ms: no thread held by a write)")

    # Bad input: 4xx naming the problem, never 5xx.
    bad = [
        ("POST", "/search", b"{not json", 400),
        ("POST", "/search", {"vector": [0.1, 0.2], "topK": 10}, 400),
        ("POST", "/search", {"vector": queries[0].tolist(), "topK": 0}, 400),
        ("POST", "/search", {"vector": queries[0].tolist(), "filter": {"year": {"$near": 3}}}, 400),
        ("POST", "/documents", {"records": [{"id": "", "values": queries[0].tolist()}]}, 400),
        ("POST", "/documents", {"records": [{"id": "x", "values": [1.0] * 383 + [1e39]}]}, 400),  # inf as float32
        ("POST", "/documents", {"records": [{"id": "x", "values": [1.0] * 384, "metadata": {"a": {"b": 1}}}]}, 400),
        ("GET", "/documents/no-such-record", None, 404),
        ("POST", "/search", b"[" + b"0.5," * (3 << 20) + b"0.5]", 413),
    ]
    for method, path, body, want in bad:
        status, out = client.call(method, path, body)
        check(status == want, f"{method} {path} with bad input: {status} {out[:90].decode(errors='replace')}")
    check(client.call("GET", "/documents/x")[0] == 404, "the rejected record was not stored")

    # Prometheus metrics.
    status, text = client.call("GET", "/metrics")
    text = text.decode()

    def metric(name, labels='index="packages"'):
        values = [float(v) for lab, v in re.findall(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", text, re.M)
                  if all(part in lab for part in labels.split(","))]
        return sum(values) if values else None

    check(status == 200 and (metric("lodestone_queries_total") or 0) >= sent,
          f"/metrics: lodestone_queries_total {metric('lodestone_queries_total')} >= {sent} queries sent")
    check((metric("lodestone_upserted_records_total") or 0) >= len(ids) + len(written),
          f"/metrics: lodestone_upserted_records_total {metric('lodestone_upserted_records_total')}")
    check((metric("lodestone_log_syncs_total") or 0) > 0 and (metric("lodestone_log_sync_seconds_total") or 0) > 0.14,
          f"/metrics: lodestone_log_syncs_total {metric('lodestone_log_syncs_total')}, "
          f"lodestone_log_sync_seconds_total {metric('lodestone_log_sync_seconds_total')}")
    check(metric("lodestone_query_duration_seconds_count") is not None and metric("lodestone_records") is not None,
          "/metrics: the query-time histogram and the records gauge are exported")
    check(metric("lodestone_errors_total", 'error="dimension_mismatch"') == 1,
          "/metrics: the bad query is counted under lodestone_errors_total{error=\"dimension_mismatch\"}")

    # SIGTERM: persist, exit 0.
    code = stop(proc)
    log = open(a.log, encoding="utf-8", errors="replace").read()
    check(code == 0, f"SIGTERM: exited with {code}")
    check("lodestone service stopped" in log, "the log says the service persisted and stopped")

    # Restart: the persisted index opens (no rebuild) with every acknowledged write.
    t0 = time.time()
    proc = start(a.binary, args, dict(os.environ), a.log)
    check(wait_healthy(client, proc, 120), f"restarted in {time.time() - t0:.1f} s")
    log = open(a.log, encoding="utf-8", errors="replace").read()
    check("opened the persisted index" in log, "the restart mapped the persisted index (no rebuild)")
    missing = [rid for rid in written if client.call("GET", "/documents/" + rid)[0] != 200]
    check(not missing, f"all {len(written)} acknowledged writes are there after the restart")
    check(stop(proc) == 0, "second SIGTERM: exited 0")


if __name__ == "__main__":
    main()
