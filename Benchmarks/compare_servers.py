#!/usr/bin/env python3
"""Vector servers under HTTP load: `lodestone serve` against Chroma's server
(`chroma run`), on the same data, at the same recall, in one run.

    python3 Benchmarks/compare_servers.py [--data ../shared/data/pypi-minilm] [--duration 10]

Both servers get the same HNSW build settings (cosine, M=16,
efConstruction=200) and the same vectors, loaded through their own APIs in
batches of 1,000. Lodestone runs first: the smallest ef whose recall@10 over
the 1,000 queries reaches --target is chosen (recall measured through the
server, one query at a time). Chroma's collection is then created with that
ef as its `ef_search` (changing it later with `modify` does not reach a
running collection's searches: recall stays the same at every value), and its
recall is measured the same way. Then wrk (C, keep-alive, loopback) replays those
queries, top-10, for --duration seconds at each concurrency (connections),
and reports requests/s and the p50/p99 latency wrk measured. Load generator
and servers share this machine's cores.

Needs `apt-get install wrk` and `pip install chromadb numpy`.
"""
import argparse, http.client, json, os, signal, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import DEFAULT_DATA, bench_env, build_lodestone  # noqa: E402
from peers import read_matrix, recall  # noqa: E402

EFS = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384]

WRK_SCRIPT = r"""
local bodies = {}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format('{"requests": %d, "seconds": %f, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
"""


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(port, path, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no server on port {port}")


class Client:
    """A keep-alive JSON client."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data else {}


def wrk(url, bodies, connections, duration, tmp):
    """wrk replaying `bodies` (one JSON body per line) at `connections`."""
    script = os.path.join(tmp, "replay.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                          "-s", script, url], capture_output=True, text=True, env={**os.environ, "BODIES": bodies},
                         check=True).stdout
    line = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    line["qps"] = line["requests"] / line["seconds"]
    return line


class Lodestone:
    name = "Lodestone"

    def __init__(self, binary, tmp):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "serve", "--db", os.path.join(tmp, "lodestone-db"), "--port",
                                      str(self.port), "--log-level", "warning"], stdout=subprocess.DEVNULL,
                                     env=bench_env())
        wait_http(self.port, "/indexes")
        self.client = Client(self.port)

    def load(self, base, ef):
        self.ef = ef
        self.client.call("POST", "/indexes", {"name": "bench", "dimension": base.shape[1], "metric": "cosine",
                                              "lodestone": {"m": 16, "ef_construction": 200}})
        for start in range(0, len(base), 1000):
            self.client.call("POST", "/_data/bench/vectors/upsert", {"vectors": [
                {"id": str(start + i), "values": v.tolist()} for i, v in enumerate(base[start:start + 1000])]})

    def set_ef(self, ef):
        self.ef = ef

    def body(self, q):
        return {"topK": 10, "vector": q.tolist(), "lodestone": {"ef": self.ef}}

    def search(self, queries):
        return np.array([[int(m["id"]) for m in self.client.call("POST", "/_data/bench/query", self.body(q))["matches"]]
                         for q in queries])

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/_data/bench/query"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


class Chroma:
    name = "Chroma"

    def __init__(self, tmp):
        import chromadb
        self.version = chromadb.__version__
        self.port = free_port()
        chroma = os.path.join(os.path.dirname(sys.executable), "chroma")
        self.proc = subprocess.Popen([chroma, "run", "--path", os.path.join(tmp, "chroma-db"), "--port",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(self.port, "/api/v2/heartbeat")
        self.client = chromadb.HttpClient(host="127.0.0.1", port=self.port)

    def load(self, base, ef):
        self.collection = self.client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine", "ef_construction": 200, "max_neighbors": 16,
                                             "ef_search": ef}})
        for start in range(0, len(base), 1000):
            chunk = base[start:start + 1000]
            self.collection.add(ids=[str(start + i) for i in range(len(chunk))], embeddings=chunk)

    def body(self, q):
        return {"query_embeddings": [q.tolist()], "n_results": 10, "include": ["distances"]}

    def search(self, queries):
        out = []
        for start in range(0, len(queries), 100):
            r = self.collection.query(query_embeddings=queries[start:start + 100], n_results=10, include=["distances"])
            out += [[int(i) for i in ids] for ids in r["ids"]]
        return np.array(out)

    @property
    def url(self):
        return (f"http://127.0.0.1:{self.port}/api/v2/tenants/default_tenant/databases/default_database/"
                f"collections/{self.collection.id}/query")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--prefix", default="", help="file prefix in --data (small_ for the 10,000 slice)")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--engines", nargs="+", default=["lodestone", "chroma"])
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    p = lambda n: os.path.join(args.data, args.prefix + n)
    base = read_matrix(p("base.fvecs"), "<f4")
    queries = read_matrix(p("query.fvecs"), "<f4")
    truth = read_matrix(p("groundtruth.ivecs"), "<i4")
    print(f"data: {args.data} ({args.prefix or 'full'}), {base.shape[0]} x {base.shape[1]}, {len(queries)} queries; "
          f"machine: {os.cpu_count()} cores", flush=True)
    results = []
    ef_chosen = 64
    with tempfile.TemporaryDirectory(prefix="lodestone-servers-") as tmp:
        for engine in args.engines:
            server = Lodestone(build_lodestone(), tmp) if engine == "lodestone" else Chroma(tmp)
            try:
                t0 = time.perf_counter()
                server.load(base, ef_chosen)
                build = time.perf_counter() - t0
                memory = rss_mb(server.proc.pid)
                chosen = None
                for ef in (EFS if hasattr(server, "set_ef") else [ef_chosen]):
                    if hasattr(server, "set_ef"):
                        server.set_ef(ef)
                    r = recall(server.search(queries), truth, 10)
                    print(f"  {server.name} ef {ef}: recall@10 {r:.4f}", flush=True)
                    if r >= args.target or not hasattr(server, "set_ef"):
                        chosen = (ef, r)
                        break
                if chosen is None:
                    print(f"  {server.name} never reaches recall {args.target}", flush=True)
                    continue
                ef_chosen = chosen[0]
                bodies = os.path.join(tmp, f"{engine}.bodies")
                with open(bodies, "w") as f:
                    for q in queries:
                        f.write(json.dumps(server.body(q)) + "\n")
                for c in args.concurrency:
                    w = wrk(server.url, bodies, c, args.duration, tmp)
                    row = {"engine": server.name, "ef": chosen[0], "recall": chosen[1], "concurrency": c,
                           "qps": w["qps"], "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
                           "errors": w["errors"] + w["non2xx"], "build_s": build, "rss_mb": memory}
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.stop()
    print()
    print(f"| server | ef | recall@10 | concurrency | queries/s | p50 ms | p99 ms | errors | load s | RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['engine']} | {r['ef']} | {r['recall']:.3f} | {r['concurrency']} | {r['qps']:,.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['build_s']:.0f} | {r['rss_mb']:,.0f} |")
    by = {(r["engine"], r["concurrency"]): r["qps"] for r in results}
    for c in args.concurrency:
        if ("Lodestone", c) in by and ("Chroma", c) in by:
            print(f"concurrency {c}: Lodestone / Chroma = {by[('Lodestone', c)] / by[('Chroma', c)]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
