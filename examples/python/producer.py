#!/usr/bin/env python3
"""A simulated Kinesis producer reporting KPL metrics through libkplm.

Three worker threads "put records" into two streams for about two seconds,
recording the metrics a KPL producer emits (UserRecordsPut, UserRecordsDataPut,
ErrorsByCode with an error code, BufferingTime). The manager uploads every
500 ms to a sink that prints each flush as a table; closing the manager at the
end makes a final flush.

Run from anywhere in the checkout after building the library:

    swift build -c release --product kplm -Xswiftc -static-stdlib
    python3 examples/python/producer.py

Set KPLM_LIBRARY to use a libkplm.so built elsewhere.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import kplm  # noqa: E402  (found through the sys.path entry above)

STREAMS = ("orders", "clicks")
SHARDS = ("shardId-000000000000", "shardId-000000000001")
ERROR_CODES = ("ProvisionedThroughputExceededException", "InternalFailure")
RUN_SECONDS = 2.0
UPLOAD_INTERVAL_MS = 500.0


class TablePrinter:
    """A sink printing every exported batch as a table."""

    def __init__(self) -> None:
        self.flushes = 0
        self.started = time.monotonic()

    def open(self) -> None:
        print("sink opened")

    def export(self, snapshots: list) -> None:
        self.flushes += 1
        elapsed = time.monotonic() - self.started
        print(f"\nflush #{self.flushes} at +{elapsed:.2f} s: {len(snapshots)} metric(s)")
        rows = [(snap.name, ", ".join(f"{n}={v}" for n, v in snap.dimensions) or "-", snap)
                for snap in snapshots]
        name_w = max(len("metric"), *(len(r[0]) for r in rows))
        dims_w = max(len("dimensions"), *(len(r[1]) for r in rows))
        header = (f"{'metric':<{name_w}}  {'dimensions':<{dims_w}}  {'count':>6} {'sum':>11} "
                  f"{'min':>8} {'max':>8} {'span s':>6}")
        print(header)
        print("-" * len(header))
        for name, dims, snap in rows:
            span = snap.window_end - snap.window_start
            print(f"{name:<{name_w}}  {dims:<{dims_w}}  {snap.count:>6} {snap.sum:>11.1f} "
                  f"{snap.min:>8.1f} {snap.max:>8.1f} {span:>6.0f}")

    def close(self) -> None:
        print(f"\nsink closed after {self.flushes} flush(es)")


def worker(manager: kplm.Manager, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    stream = STREAMS[seed % len(STREAMS)]
    # Resolve the hottest key once; later puts through the handle skip the lookup.
    records_put = manager.metric("UserRecordsPut", stream=stream)
    while not stop.is_set():
        shard = rng.choice(SHARDS)
        size = rng.randint(100, 4000)
        records_put.put(1)
        manager.put("UserRecordsDataPut", size, stream=stream, shard_id=shard)
        manager.put("BufferingTime", rng.uniform(5.0, 120.0), stream=stream)
        if rng.random() < 0.05:
            manager.put("ErrorsByCode", 1, stream=stream, shard_id=shard,
                        error_code=rng.choice(ERROR_CODES))
        time.sleep(0.002)


def main() -> int:
    print(f"libkplm {kplm.version()} from {kplm.library_path()}")
    sink = TablePrinter()
    stop = threading.Event()
    manager = kplm.Manager(level=kplm.Level.DETAILED, upload_interval_ms=UPLOAD_INTERVAL_MS,
                           sink=sink)
    with manager:  # start: open the sink, run the uploader; exit: final flush, close
        threads = [threading.Thread(target=worker, args=(manager, stop, seed), name=f"worker-{seed}")
                   for seed in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(RUN_SECONDS)
        stop.set()
        for thread in threads:
            thread.join()

    print("\nrolling window after close (still readable until free):")
    for snap in manager.snapshots():
        dims = ", ".join(f"{n}={v}" for n, v in snap.dimensions)
        print(f"  {snap.name} [{dims}]: count={snap.count} sum={snap.sum:.1f} "
              f"min={snap.min:.1f} max={snap.max:.1f}")
    if manager.last_sink_error is not None:
        print(f"sink error: {manager.last_sink_error!r}", file=sys.stderr)
        return 1
    manager.free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
