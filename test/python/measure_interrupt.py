"""How long Ctrl-C takes to stop a quantize, and why.

    /usr/bin/python3 test/python/measure_interrupt.py [--n 4096 --k 4096 --tokens 512 --repeats 7]

For each method, one run records the time between consecutive progress
reports (the longest gap bounds the latency: a SIGINT is seen at the next
report), then --repeats runs each receive a SIGINT from another thread at a
random moment of the call, and the time from os.kill() to the
KeyboardInterrupt is measured. Prints medians and maxima, the machine's CPU
count and load. Not a test: nothing here passes or fails.
"""

import argparse
import os
import random
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                os.pardir, "python"))
import numpy as np  # noqa: E402

import qlib  # noqa: E402

TARGET = 0.5


def gaps(w, method, calib, ctx, opts):
    """(total seconds, {(stage before, stage after): [seconds]})."""
    times = []
    t0 = time.monotonic()
    qlib.quantize(w, method, calib=calib, ctx=ctx,
                  progress=lambda s, f: times.append((time.monotonic(), s)), **opts)
    t1 = time.monotonic()
    out = {}
    prev_t, prev_s = t0, "(start)"
    for t, s in times + [(t1, "(return)")]:
        out.setdefault((prev_s, s), []).append(t - prev_t)
        prev_t, prev_s = t, s
    return t1 - t0, out


def latency(w, method, calib, ctx, opts, at):
    """Seconds from os.kill(SIGINT), at seconds into the call, to the
    KeyboardInterrupt; None if the call ended first."""
    sent = []

    def send():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(at, send)
    timer.start()
    try:
        qlib.quantize(w, method, calib=calib, ctx=ctx, **opts)
    except KeyboardInterrupt:
        return time.monotonic() - sent[0]
    finally:
        timer.cancel()
        timer.join()
    # the signal may land just after: let its KeyboardInterrupt go by
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--methods", default="gptq,gptq-act-order,awq")
    a = ap.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = np.random.default_rng(0)
    random.seed(1)
    w = (rng.standard_t(5, size=(a.n, a.k)) * 0.02).astype(np.float32)
    x = rng.standard_normal((a.tokens, a.k), dtype=np.float32)
    ctx = qlib.Context(threads=a.threads)
    calib = qlib.Calibration(a.k, max_samples=a.tokens, ctx=ctx)
    calib.add(x)
    print("%s; %d CPUs, context threads %d, isa %s; load average %s; %dx%d, %d tokens"
          % (qlib.library_path(), os.cpu_count(), ctx.threads, ctx.isa,
             " ".join("%.1f" % v for v in os.getloadavg()), a.n, a.k, a.tokens))
    for name in a.methods.split(","):
        method, opts = (("gptq", dict(act_order=True)) if name == "gptq-act-order"
                        else (name, {}))
        total, g = gaps(w, method, calib, ctx, opts)
        worst = max(max(v) for v in g.values())
        print("\n%s: %.2f s, %d reports; longest gap %.3f s" % (
            name, total, sum(len(v) for v in g.values()) - 1, worst))
        for (s0, s1), v in g.items():
            flag = "  > %.1f s" % TARGET if max(v) > TARGET else ""
            print("  %-10s -> %-10s n=%3d  median %.3f s  max %.3f s%s"
                  % (s0, s1, len(v), statistics.median(v), max(v), flag))
        lat = []
        for _ in range(a.repeats):
            d = latency(w, method, calib, ctx, opts, random.uniform(0.05, max(0.1, total - 0.3)))
            if d is not None:
                lat.append(d)
        if lat:
            print("  Ctrl-C -> KeyboardInterrupt over %d signals at random moments: "
                  "median %.3f s, max %.3f s" % (len(lat), statistics.median(lat), max(lat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
