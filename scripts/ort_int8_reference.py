#!/usr/bin/env python3
"""onnxruntime's own int8, for comparison with `distill quantize`: quantize_static (QDQ format, per-channel
int8 weights, uint8 activations, min/max calibration) on a float student's ONNX export, calibrated on the
same number of Fashion-MNIST training images, then scored on the 10,000 test images and timed at batch 1
and batch 256 on two threads (random inputs, as scripts/ort_reference.py times).

Run:  python scripts/ort_int8_reference.py FLOAT.onnx --output INT8.onnx [--samples 1000] [--seed 0]
Prints one JSON object: accuracy, agreement (the fraction of test images on which the int8 model's class is the
float model's), latency_us_p50 (batch 1), samples_per_second (batch 256), bytes.
Needs numpy, onnx and onnxruntime (the test venv, .venv, has them). DISTILL_FASHION_MNIST names the
folder of the Fashion-MNIST files (default /usr/share/datasets/fashion-mnist).
"""
import argparse
import gzip
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ort_reference import timed_calls, warm_up  # this folder's script: the same warm-up and timing loop
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

FASHION = Path(os.environ.get("DISTILL_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def images(split):
    with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    return x.astype(np.float32), y


class Samples(CalibrationDataReader):
    def __init__(self, name, x):
        self.rows = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.rows, None)


def timed(session, batch, calls):
    feeds = {session.get_inputs()[0].name: np.random.default_rng(1).random((batch, 1, 28, 28), dtype=np.float32)}
    warm_up(session, feeds, 50 if batch == 1 else 5)
    times, total = timed_calls(session, feeds, calls)
    return times[len(times) // 2], calls * batch / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--output", required=True)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    train_x, _ = images("train")
    test_x, test_y = images("t10k")
    pick = np.random.default_rng(args.seed).permutation(len(train_x))[: args.samples]
    name = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    quantize_static(args.model, args.output, Samples(name, train_x[pick]), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.output, options, providers=["CPUExecutionProvider"])
    def predictions(scoring):
        return np.concatenate([scoring.run(None, {name: test_x[i:i + 1000]})[0] for i in range(0, len(test_x), 1000)]).argmax(axis=1)
    int8 = predictions(session)
    accuracy = float((int8 == test_y).mean())
    agreement = float((int8 == predictions(ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"]))).mean())
    latency, _ = timed(session, 1, 5000)
    _, rate = timed(session, 256, 200)
    print(json.dumps({"model": args.output, "onnxruntime": ort.__version__, "threads": args.threads, "samples": args.samples,
                      "accuracy": accuracy, "agreement": agreement, "latency_us_p50": latency, "samples_per_second": rate,
                      "bytes": os.path.getsize(args.output)}, sort_keys=True))


if __name__ == "__main__":
    main()
