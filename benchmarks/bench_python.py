"""Python put costs, next to aiokpl 0.2.0 measured in the same process.

Each figure is the median over several rounds of ``timeit`` (nanoseconds per
put); each ratio is the median of the per-round ratios ``aiokpl put / this
put`` (both measured in the same round, so machine noise cancels). Level
DETAILED, the null sink, the default (library) clock, one key:
``UserRecordsPut`` with a stream and a shard.

    python3 benchmarks/bench_python.py [--rounds N] [--json FILE]

Needs aiokpl (``pip install aiokpl==0.2.0``) for the ratios; without it
only kplm's figures are printed. ``KPLM_LIBRARY`` picks the library.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import timeit
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
import kplm  # noqa: E402

NAME = "UserRecordsPut"
STREAM = "s"
SHARD = "shardId-000000000000"


def ns_per_call(fn: Callable[[], None], number: int) -> float:
    """Best of three timeit runs of `number` calls, in ns per call."""
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=500_000, help="kplm puts per timeit run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    figures: Dict[str, Callable[[], None]] = {}
    manager = kplm.Manager(kplm.Level.DETAILED)
    manager.start()
    put = manager.put
    figures["kplm.Manager.put by names"] = lambda: put(NAME, 1.0, stream=STREAM, shard_id=SHARD)
    handle = manager.metric(NAME, stream=STREAM, shard_id=SHARD)
    handle_put = handle.put
    figures["kplm.Metric.put (handle)"] = lambda: handle_put(1.0)

    # ctypes' own floor: one bare call of kplm_metric_put per put.
    raw = kplm._library.lib().kplm_metric_put
    raw_ptr = handle._ptr
    figures["bare ctypes call of kplm_metric_put"] = lambda: raw(raw_ptr, 1.0)

    try:
        from kplm.aiokpl.metrics import MetricsLevel as KLevel
        from kplm.aiokpl.metrics import MetricsManager as KManager
        kaio = KManager(level=KLevel.DETAILED)
        kaio_put = kaio.put
        figures["kplm.aiokpl MetricsManager.put"] = lambda: kaio_put(NAME, 1.0, stream=STREAM, shard_id=SHARD)
    except ImportError as exc:
        print(f"(kplm.aiokpl not measured: {exc})")

    baseline: Optional[Callable[[], None]] = None
    try:
        from aiokpl.metrics import MetricsLevel, MetricsManager
        peer = MetricsManager(level=MetricsLevel.DETAILED)
        peer_put = peer.put
        baseline = lambda: peer_put(NAME, 1.0, stream=STREAM, shard_id=SHARD)  # noqa: E731
    except ImportError:
        print("(aiokpl not installed: no ratios; pip install aiokpl==0.2.0)")

    costs: Dict[str, List[float]] = {name: [] for name in figures}
    ratios: Dict[str, List[float]] = {name: [] for name in figures}
    peer_costs: List[float] = []
    for _ in range(args.rounds):
        peer_ns = ns_per_call(baseline, max(1, args.number // 50)) if baseline else None
        if peer_ns is not None:
            peer_costs.append(peer_ns)
        for name, fn in figures.items():
            cost = ns_per_call(fn, args.number)
            costs[name].append(cost)
            if peer_ns is not None:
                ratios[name].append(peer_ns / cost)

    print(f"kplm {kplm.version()} Python puts: median of {args.rounds} rounds; "
          "ratio = aiokpl put / this put, per round, median")
    print(f"{'figure':<42} {'ns/put':>10} {'x cheaper':>10}")
    report: Dict[str, Dict[str, Optional[float]]] = {}
    if peer_costs:
        print(f"{'aiokpl 0.2.0 MetricsManager.put (baseline)':<42} {statistics.median(peer_costs):>10.0f} {'1':>10}")
        report["aiokpl 0.2.0 MetricsManager.put"] = {"ns": statistics.median(peer_costs), "ratio": 1.0}
    for name in figures:
        ns = statistics.median(costs[name])
        ratio = statistics.median(ratios[name]) if ratios[name] else None
        print(f"{name:<42} {ns:>10.0f} {('%.1f' % ratio) if ratio else '-':>10}")
        report[name] = {"ns": ns, "ratio": ratio}
    exported = manager.query(NAME, stream=STREAM, shard_id=SHARD).count
    print(f"(every put recorded: {exported} observations in the key)")
    if args.json:
        args.json.write_text(json.dumps({"python": report}, indent=2))
        print(f"JSON written to {args.json}")
    manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
