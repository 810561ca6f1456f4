#!/usr/bin/env python3
"""Writes the lifecycle inputs of Tests/fuzz/corpus for fuzz_abi.c (SPEC §9):
a failed final export kept and retried by a later kplm_close, kplm_free after
a failed close (one more try, then the sink is closed and the rest
discarded), and puts made inside a record callback that call no record of
the same manager. Same format and Program class as make_corpus.py; the names
do not start with seed-, so make_corpus.py leaves them alone.

    python3 Tests/fuzz/make_lifecycle_corpus.py [OUTPUT_DIR]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_corpus import (DETAILED, D_STREAM1, R_CLOSE, R_FREE, R_METRIC_PUT, R_PUT, R_PUT_OTHER,  # noqa: E402
                         R_SNAPSHOTS, Program)

out = {}
# Final export fails twice (close -> ESINK, sink left open), a put after it is
# refused, the third close delivers the same data and closes the sink; a
# fourth close and the free do nothing.
p = Program().config(DETAILED)
p.set_sink(record=True, close=True, fail=1).start()
p.put(("name", 1), 1, ("dim", D_STREAM1)).cb(0).put(("name", 2), 5).cb(0).put(("name", 1), 3, ("dim", D_STREAM1)).cb(0)
p.flush().cb(1, 0)                  # a failed flush: kept
p.close().cb(1, 0)                  # final export fails
p.put(("name", 3), 1).flush()       # ECLOSED
p.close().cb(1, R_PUT).s(("name", 4)).s(None).s(None).s(None).v(1)   # retry fails; a put from it: ECLOSED
p.close().cb(0, 0, R_SNAPSHOTS).u8(0)   # retry delivered; close callback reads snapshots
p.close().free()
out["close-retry"] = p

# Final export always fails: close ESINK, close ESINK again, then free makes
# one more try, discards and closes the sink (on the freeing thread).
p = Program().config(DETAILED)
p.set_sink(close=True, fail=2).start()
p.put(("name", 1), 1).put(("name", 1), 2)
p.close().cb(0).close().cb(R_CLOSE).free().cb(0, R_FREE)
out["free-after-failed-close"] = p

# Free without close, final export fails: the sink is closed all the same.
p = Program().config(DETAILED)
p.set_sink(close=True, record=True, fail=2).start().put(("name", 1), 1).cb(0)
p.free().cb(0, 0)
out["free-failed-final"] = p

# record does not recurse: a put (or metric_put) made inside record of the
# same manager, directly or through the other manager's record, calls no
# record of that manager; the other manager's record still runs.
p = Program(both=True).config(DETAILED).config(DETAILED)
p.set_sink(record=True, slot=0).set_sink(record=True, slot=1).start(0).start(1)
p.metric_get(("name", 3), slot=0)
p.put(("name", 1), 1, slot=0).cb(R_PUT).s(("name", 2)).s(None).s(None).s(None).v(2)
p.put(("name", 1), 1, slot=0).cb(R_METRIC_PUT).u8(0).v(3)
p.put(("name", 1), 1, slot=0).cb(R_PUT_OTHER).s(("name", 2)).s(None).s(None).s(None).v(1) \
    .cb(R_PUT_OTHER).s(("name", 5)).s(None).s(None).s(None).v(4)
p.flush(0).cb(0).flush(1).cb(0).close(0).cb(0).close(1).cb(0)
out["record-no-recursion"] = p

# Noisy: a tiny export timeout and failing exports; close, retry, free.
p = Program().config(DETAILED, timeout=("raw", 0.001))
p.set_sink(close=True, fail=3).start().put(("name", 1), 1).put(("name", 2), 1)
p.close().close().close().free()
out["close-retry-timeout"] = p

p = Program().config(DETAILED, interval=("short", 2))
p.set_sink(close=True, fail=1, slow=True).start().put(("name", 1), 1).put(("name", 2), 1)
p.misc(12 | 0xF0).put(("name", 1), 1).close().close().close().free()
out["close-retry-short-interval"] = p

dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(dest, exist_ok=True)
for name, prog in out.items():
    with open(os.path.join(dest, name), "wb") as f:
        f.write(bytes(prog.b))
print(f"wrote {len(out)} inputs to {dest}")
