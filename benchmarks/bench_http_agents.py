"""Requests per second over real HTTP with a new user agent on every request (issue 20).

    python benchmarks/bench_http_agents.py [--duration 10] [--rounds 3] [--connections 16]

Starts ``pixel-middleware serve --workers 2`` (a ``file:`` sink), as
``bench_http.py`` does and with its helpers, and drives it with ``wrk`` on the
RudderStack example URL in three ways, alternated, ``--rounds`` times:

  fixed       one real browser user agent on every request: the agent
              step's cache answers all but the first
  random 52   a random printable user agent of 52 characters per request
  random 512  the same, 512 characters (all the step reads)

Each wrk thread draws its random user agents, before the run, into a pool of
8,192 it cycles through: more than the step's 4,096-entry cache, so every
request classifies a user agent that cache does not hold, while wrk does
the same work per request in all three runs. Target: random >= 0.8x fixed
(the median round's ratio, both lengths). Compare ratios from one run,
never absolute figures across runs: wrk, the server and this script share
the machine's cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_http import PATH, QUERY, free_port, start, stop, wait_ready, worker_cpu_seconds, wrk  # noqa: E402

FIXED = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
POOL = 8192

#: wrk's script: one User-Agent per request from a pool drawn at thread start (UA_FIXED for one agent).
LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  local fixed = os.getenv("UA_FIXED") or ""
  math.randomseed(id * 7919 + 17)
  pool = {}
  if fixed ~= "" then
    pool[1] = fixed
  else
    local length, size = tonumber(os.getenv("UA_LENGTH")), tonumber(os.getenv("UA_POOL"))
    for i = 1, size do
      local chars = {}
      for j = 1, length do chars[j] = string.char(math.random(33, 126)) end
      pool[i] = table.concat(chars)
    end
  end
  n = 0
end
function request()
  n = n % #pool + 1
  wrk.headers["User-Agent"] = pool[n]
  return wrk.format()
end
"""

VARIANTS = {
    "fixed": {"UA_FIXED": FIXED},
    "random 52": {"UA_LENGTH": "52", "UA_POOL": str(POOL)},
    "random 512": {"UA_LENGTH": "512", "UA_POOL": str(POOL)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    workdir = tempfile.mkdtemp(prefix="bench-http-agents-")
    events_file = os.path.join(workdir, "events.jsonl")
    script = os.path.join(workdir, "user_agents.lua")
    with open(script, "w") as file:
        file.write(LUA)
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}?{QUERY}"
    server = start("serve", port, events_file)
    results: Dict[str, List[Dict[str, float]]] = {name: [] for name in VARIANTS}
    recorded = 0
    try:
        wait_ready(url, server)
        print(f"pixel-middleware serve, 2 workers; wrk -t2 -c{args.connections} -d{args.duration:g}s; "
              f"{os.cpu_count()} cores; RudderStack track example; pool of {POOL} user agents per wrk thread")
        for round_ in range(1, args.rounds + 1):
            for name, env in VARIANTS.items():  # alternated, so that a busy spell hits all alike
                cpu = worker_cpu_seconds(server.pid)
                figures = wrk(url, args.duration, args.connections, script=script, env=env)
                figures["cpu_us"] = (worker_cpu_seconds(server.pid) - cpu) / figures["requests"] * 1e6
                results[name].append(figures)
                recorded += figures["requests"]
                print(f"  round {round_} {name:<10} {figures['rps']:9.0f} req/s   p50 {figures['p50']:6.2f} ms"
                      f"   p99 {figures['p99']:6.2f} ms   worker CPU {figures['cpu_us']:4.0f} us/request")
    finally:
        stop(server)
    agents: Dict[str, int] = {}
    with open(events_file, "rb") as file:
        lines = 0
        for line in file:
            lines += 1
            agent = json.loads(line)["context"]["pixel"]["agent"]
            agents[agent] = agents.get(agent, 0) + 1
    print()
    for name, rows in results.items():
        print(f"  {name:<10} median {statistics.median(r['rps'] for r in rows):9.0f} req/s   "
              f"p99 {statistics.median(r['p99'] for r in rows):6.2f} ms   "
              f"worker CPU {statistics.median(r['cpu_us'] for r in rows):4.0f} us/request")
    missed = False
    for name in ("random 52", "random 512"):
        ratios = [r["rps"] / f["rps"] for f, r in zip(results["fixed"], results[name])]
        median = statistics.median(ratios)
        missed |= median < 0.8
        cpu = statistics.median(results["fixed"][i]["cpu_us"] / results[name][i]["cpu_us"] for i in range(len(ratios)))
        print(f"  {name} / fixed = {median:.2f}x (median round; rounds "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.80x: {'ok' if median >= 0.8 else 'MISSED'}); "
              f"by worker CPU a request {cpu:.2f}x (steadier on a shared machine)")
    print(f"  events recorded: {lines} lines for {recorded:.0f} requests counted by wrk (+ readiness probes); "
          f"agents: {agents}")
    shutil.rmtree(workdir, ignore_errors=True)
    if lines < 0.99 * recorded:
        raise SystemExit("the collector answered requests it did not record")


if __name__ == "__main__":
    main()
