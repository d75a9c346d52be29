"""The hostile corpus (tests/hostile/) through the real binary: every crafted input ends in a clear error
naming the file or option, exit status 1 (64 for a command-line usage error), no signal, under 1 GiB of
memory and 10 s."""
import os
import sys
from pathlib import Path

import pytest

from distillcli import distill_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
import corpus  # noqa: E402

CASES = corpus.all_cases()


def hostile_binary():
    """The release build users run (scripts/test.sh builds it and names it in DISTILL_RELEASE_BINARY); a debug
    build, slower by several times, gets three times the time limit."""
    release = os.environ.get("DISTILL_RELEASE_BINARY")
    if release and Path(release).exists():
        return Path(release).resolve(), 1.0
    return distill_binary().resolve(), 3.0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_a_clear_error(case, tmp_path):
    binary, slowness = hostile_binary()
    outcome = corpus.run_case(binary, case, tmp_path / "case", time_factor=slowness)
    problems = outcome.problems(case)
    assert not problems, f"{case.id}: {'; '.join(problems)}\nstderr: {outcome.stderr[-2000:]}"


def test_corpus_is_broad():
    families = {c.family for c in CASES}
    assert len(CASES) >= 150 and len(families) >= 6, (len(CASES), sorted(families))
