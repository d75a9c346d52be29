#!/usr/bin/env bash
# The DocC documentation of the DistillKit library (Sources/DistillKit/DistillKit.docc: Getting
# started, Methods, Teachers from anywhere, Shipping a student), built with every warning an error.
# The archive lands in .build/plugins/Swift-DocC/outputs/DistillKit.doccarchive; to read it as a
# website: `swift package --disable-sandbox preview-documentation --target DistillKit`.
set -euo pipefail
cd "$(dirname "$0")/.."
swift package --disable-sandbox generate-documentation --target DistillKit --warnings-as-errors
