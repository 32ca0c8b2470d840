"""The in-memory dedup window: what it costs per request and in memory, for usual and hostile traffic.

    python benchmarks/bench_dedup.py [--quick]

Prints, measured in this run:

- the dedup step's cost per event, for a repeat of a key seen (the usual
  re-open), for a fresh key each time (the worst a client can send: every id
  new, so every call inserts and, once the LRU is full, evicts), and for a
  signed event (whose key also says it was signed), against the middleware's
  whole request without dedup as the baseline;
- the memory the LRU holds at 100,000 keys (its size, ``MEMORY_SIZE``),
  measured with tracemalloc, and that it stays there when a client keeps
  sending new ids: the bound holds, the guarantee for old keys does not (see
  :mod:`pixel_middleware.pipeline.steps.dedup`).
"""
from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from werkzeug.test import EnvironBuilder  # noqa: E402

from pixel_middleware import MemorySink, PixelMiddleware  # noqa: E402
from pixel_middleware.pipeline.steps.dedup import MEMORY_SIZE, MemoryDedup  # noqa: E402
from pixel_middleware.pipeline.dialects import get_dialect  # noqa: E402

from bench_core import per_call  # noqa: E402  (beside this file)


def main() -> None:
    quick = "--quick" in sys.argv
    loops, repeats = (5_000, 3) if quick else (50_000, 5)
    hit = SimpleNamespace(write_key="WRITE_KEY", dialect=get_dialect("compact"), message_id_given=True)
    event = {"type": "track", "event": "Email Opened", "userId": "u1", "messageId": "m-0",
             "properties": {"campaign": "c1"}, "context": {}}
    signed = {**event, "context": {"pixel": {"signed": True}}}
    ids = [f"m-{i}" for i in range(2 * loops * repeats)]
    fresh_ids = iter(ids).__next__  # a new id on every call, across the runs too

    sink = MemorySink()
    middleware = PixelMiddleware(None, sink=sink)
    environ = EnvironBuilder(path="/v1/pixel/track", query_string="wk=k&e=Email+Opened&uid=u1&mid=m1").get_environ()

    def request(i: int) -> None:
        for _ in middleware(environ.copy(), lambda *a: None):
            pass
        if len(sink.events) > 10_000:
            sink.events.clear()

    baseline = per_call(request, loops, repeats)
    seen = MemoryDedup(3600)
    seen(event, hit)

    def repeat(i: int) -> None:
        try:
            seen(event, hit)
        except Exception:
            pass

    def fresh(i: int, dedup: MemoryDedup = MemoryDedup(3600)) -> None:
        event["messageId"] = fresh_ids()
        dedup(event, hit)

    def fresh_signed(i: int, dedup: MemoryDedup = MemoryDedup(3600)) -> None:
        signed["messageId"] = fresh_ids()
        dedup(signed, hit)

    print(f"python {sys.version.split()[0]}, {loops} calls x {repeats} runs, best run shown")
    print(f"  baseline: a whole request without dedup    {baseline:6.2f} us")
    for name, call in (("a repeat (the usual re-open)", repeat), ("a fresh id each time (worst)", fresh),
                       ("a fresh id, signed event", fresh_signed)):
        cost = per_call(call, loops, repeats)
        print(f"  dedup step, {name:<30} {cost:6.2f} us  ({cost / baseline:.2f}x the request)")

    # Memory at the bound, and under a flood of new ids past it.
    gc.collect()
    tracemalloc.start()
    dedup = MemoryDedup(3600)
    before = tracemalloc.get_traced_memory()[0]
    for i in range(MEMORY_SIZE):
        event["messageId"] = f"fill-{i}"
        dedup(event, hit)
    full = tracemalloc.get_traced_memory()[0] - before
    for i in range(MEMORY_SIZE // 2):
        event["messageId"] = f"flood-{i}"
        dedup(event, hit)
    flooded = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"  memory at {MEMORY_SIZE:,} keys: {full / 1e6:.1f} MB ({full / MEMORY_SIZE:.0f} bytes a key); "
          f"after {MEMORY_SIZE // 2:,} more new ids: {flooded / 1e6:.1f} MB, {len(dedup._seen):,} keys (bounded)")


if __name__ == "__main__":
    main()
