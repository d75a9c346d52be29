#!/usr/bin/env python3
"""Runs the hostile corpus against a `distill` binary and prints one line per case.

    tests/hostile/run.py [--binary .build/release/distill] [--only FAMILY] [--verbose]

Exits 1 when any case broke the promise (a signal, a hang, too much memory or time, a wrong exit
status, or an error that does not name the file or option).
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(Path(__file__).resolve().parents[2] / ".build/release/distill"))
    parser.add_argument("--only", help="run only the families whose name starts with this")
    parser.add_argument("--verbose", action="store_true", help="print each case's stderr")
    options = parser.parse_args()
    cases = [c for c in corpus.all_cases() if not options.only or c.family.startswith(options.only)]
    failed = 0
    with tempfile.TemporaryDirectory() as root:
        for i, case in enumerate(cases):
            outcome = corpus.run_case(Path(options.binary).resolve(), case, Path(root) / f"{i:04d}")
            problems = outcome.problems(case)
            failed += bool(problems)
            status = "FAIL" if problems else "ok  "
            first = (outcome.stderr.strip().splitlines() or [""])[-1][:150]
            print(f"{status} {case.id:55s} rc={outcome.returncode:<4d} {outcome.seconds:5.2f}s {outcome.max_rss_bytes >> 20:5d}MiB  {'; '.join(problems) or first}")
            if options.verbose:
                print("     " + outcome.stderr.strip().replace("\n", "\n     ")[:2000])
    print(f"{len(cases) - failed} of {len(cases)} cases held, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
