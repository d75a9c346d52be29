#!/usr/bin/env bash
# Installs what DistillKit and `distill demo` need on Debian/Ubuntu, only what is missing:
#   libopenblas-dev (BLAS), libdnnl-dev (oneDNN convolutions; optional at run time, im2col without it),
#   zlib1g-dev (gzip), dataset-fashion-mnist (the demo's data).
# The test command (scripts/test.sh) adds what only the tests need (scripts/setup-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt-install.sh
apt_install libopenblas-dev libdnnl-dev zlib1g-dev dataset-fashion-mnist
