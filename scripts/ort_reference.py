#!/usr/bin/env python3
"""onnxruntime's side of `distill bench onnx`: the same file, random inputs of the declared shapes
(the leading dimension is the batch; uniform [0, 1) floats, zeros for integers), two threads.

Run:  python scripts/ort_reference.py MODEL.onnx --batch N [--calls K] [--threads 2]
Prints one JSON object: latency_us_p50/_p90/_p99, samples_per_second, us_per_sample.
Needs numpy and onnxruntime (the test venv, .venv, has both).
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort

INTEGER_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
                 "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def feeds_for(session, batch):
    rng = np.random.default_rng(1)
    feeds = {}
    for i in session.get_inputs():
        shape = [batch] + [d if isinstance(d, int) else None for d in i.shape[1:]]
        if None in shape:
            raise SystemExit(f"input {i.name} has a symbolic axis besides the batch: {i.shape}")
        if i.type == "tensor(float)":
            feeds[i.name] = rng.random(shape, dtype=np.float32)
        elif i.type in INTEGER_TYPES:
            feeds[i.name] = np.zeros(shape, dtype=INTEGER_TYPES[i.type])
        else:
            raise SystemExit(f"input {i.name} is {i.type}: only float and integer inputs are fed")
    return feeds


def warm_up(session, feeds, calls, seconds=0.5):
    """Runs `session` at least `calls` times and for at least `seconds`, as `distill bench` warms up (a
    process's first half second runs slower on the 2-core VMs); returns the mean time per call in s."""
    start, done = time.perf_counter(), 0
    while done < calls or time.perf_counter() - start < seconds:
        session.run(None, feeds)
        done += 1
    return (time.perf_counter() - start) / done


def timed_calls(session, feeds, calls):
    """Runs `session` `calls` times on `feeds`: each call's time in µs (sorted) and the total in s."""
    times = []
    start = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e6)
    total = time.perf_counter() - start
    times.sort()
    return times, total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--calls", type=int, default=None, help="timed calls (default: about three seconds' worth)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feeds = feeds_for(session, args.batch)
    per_call = warm_up(session, feeds, 50 if args.batch == 1 else 2)
    calls = args.calls or max(5, int(3 / max(per_call, 1e-7)))
    times, total = timed_calls(session, feeds, calls)
    pick = lambda p: times[min(len(times) - 1, int(len(times) * p))]
    rate = calls * args.batch / total
    print(json.dumps({"model": args.model, "batch": args.batch, "threads": args.threads, "calls": calls,
                      "onnxruntime": ort.__version__, "latency_us_p50": pick(0.5), "latency_us_p90": pick(0.9),
                      "latency_us_p99": pick(0.99), "samples_per_second": rate, "us_per_sample": 1e6 / rate},
                     sort_keys=True))


if __name__ == "__main__":
    main()
