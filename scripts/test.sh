#!/usr/bin/env bash
# The test command: set-up if needed, the Swift test suite, then the Python interop suite
# (files DistillKit writes read back by the reference Python packages, and the reverse).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-tests.sh
swift build --build-tests
swift test --skip-build
# The hostile-input corpus (tests/hostile) runs against the release binary, the one users run.
swift build -c release --product distill
# Data parallel under Open MPI: mpirun -np 2 against one process, a killed rank, bad hostfiles
# (about a minute; skips without mpirun).
DISTILL_BINARY=.build/release/distill scripts/mpi_check.sh
# The interop suite runs the release binary, the one users run (the debug build's training and
# inference took it from about 6.5 to 11 minutes).
if [ -d tests/interop ]; then
  DISTILL_SCRATCH=.build DISTILL_BINARY=.build/release/distill DISTILL_RELEASE_BINARY=.build/release/distill .venv/bin/pytest -q tests/interop
fi
# The README's library program, as a package of its own that depends on this checkout.
(cd examples/library && swift run distil-blobs)
# The DocC articles build without a warning.
scripts/docs.sh
# Every file reader under libFuzzer for 30 s each (fuzz/, scripts/fuzz.sh): about 5 minutes with the fuzz build.
scripts/fuzz.sh 30
