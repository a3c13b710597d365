#!/usr/bin/env python3
"""Load test of the example service with wrk (Debian's `wrk`): top-10
filtered queries at a fixed concurrency against /search (through
LodestoneService: metrics, spans) and /raw/search (the bare Index, same
handler otherwise), alternating, in one run. Prints throughput and latency
percentiles of each; docs/service.md has the results.

  python3 Examples/SemanticSearch/bench.py --binary Examples/SemanticSearch/.build/release/SemanticSearch \
      --data ../shared/data/pypi-minilm --db /tmp/semantic-search-bench
"""
import argparse, base64, json, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

import numpy as np

FILTERS = [{"year": {"$gte": 2025}}, {"popular": {"$eq": True}},
           {"$and": [{"year": {"$eq": 2019}}, {"words": {"$gte": 10}}]}]


def fvecs(path):
    raw = np.fromfile(path, dtype="<i4")
    return raw.reshape(-1, raw[0] + 1)[:, 1:].copy().view("<f4")


def seconds(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk(url, script, connections, duration):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {p: seconds(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct, int(errors.group(1)) if errors else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--small", action="store_true")
    p.add_argument("--db", required=True, help="the index directory (built on first use, reused after)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--swift-executor", action="store_true", help="the service keeps Swift's global executor")
    a = p.parse_args()
    queries = fvecs(os.path.join(a.data, ("small_" if a.small else "") + "query.fvecs"))
    bodies = [json.dumps({"vectorBase64": base64.b64encode(q.astype("<f4").tobytes()).decode(), "topK": 10,
                          "filter": FILTERS[i % len(FILTERS)], "includeMetadata": True})
              for i, q in enumerate(queries)]
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write("local bodies = {" + ",".join("[==[" + b + "]==]" for b in bodies) + "}\n"
                 "local i = 0\nwrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
                 "request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n")
    script.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--data", a.data, "--db", a.db, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([a.binary] + args + (["--small"] if a.small else [])
                            + (["--swift-executor"] if a.swift_executor else []))
    t0 = time.time()
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() - t0 > 1800:
                sys.exit("the service did not start")
            time.sleep(0.5)
    print(f"ready after {time.time() - t0:.1f} s; {len(bodies)} filtered query bodies, "
          f"{a.connections} connections, {a.seconds} s a run", flush=True)
    wrk(f"http://127.0.0.1:{port}/search", script.name, a.connections, 3)  # warm-up
    results = {"/search": [], "/raw/search": []}
    for _ in range(a.rounds):
        for path in results:
            rps, pct, errors = wrk(f"http://127.0.0.1:{port}{path}", script.name, a.connections, a.seconds)
            results[path].append((rps, pct))
            print(f"{path:12} {rps:8.0f} req/s  p50 {pct['50'] * 1e3:.2f} ms  p90 {pct['90'] * 1e3:.2f} ms  "
                  f"p99 {pct['99'] * 1e3:.2f} ms  non-2xx {errors}", flush=True)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    mean = {k: np.mean([r for r, _ in v]) for k, v in results.items()}
    worst_p99 = max(pct["99"] for v in results.values() for _, pct in v)
    print(f"service/raw throughput ratio {mean['/search'] / mean['/raw/search']:.3f}; "
          f"worst p99 {worst_p99 * 1e3:.2f} ms; exit code {code}")


if __name__ == "__main__":
    main()
