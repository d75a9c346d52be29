#!/usr/bin/env bash
# Installs what DistillKit needs on Debian/Ubuntu, only what is missing:
#   libopenblas-dev (BLAS), zlib1g-dev (gzip), dataset-fashion-mnist (the demo's data),
#   libonnx-testdata (ONNX's backend tests, run by Tests/DistillONNXTests/ConformanceTests.swift),
#   time (GNU time: the hostile-input suite measures each run's peak memory with it),
#   and a Python virtual environment in .venv with numpy, safetensors, pytest, onnx, onnxruntime,
#   scikit-learn, skl2onnx, onnxmltools, lightgbm and xgboost-cpu
#   (interop tests only; the product itself is Swift).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev zlib1g-dev dataset-fashion-mnist python3-venv libonnx-testdata time)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${DISTILL_SKIP_PYTHON:-0}" != "1" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  if ! .venv/bin/python -c "import numpy, safetensors, pytest, onnx, onnxruntime, sklearn, skl2onnx, onnxmltools, lightgbm, xgboost" 2>/dev/null; then
    echo "setup: installing the interop-test tools into .venv (numpy, safetensors, pytest, onnx, onnxruntime, scikit-learn, skl2onnx, onnxmltools, lightgbm, xgboost-cpu)" >&2
    .venv/bin/pip install -q --disable-pip-version-check numpy safetensors pytest onnx onnxruntime scikit-learn skl2onnx onnxmltools lightgbm xgboost-cpu
  fi
fi
