"""The hostile corpus (tests/hostile/) through the real binary: every crafted input ends in a clear error
naming the file or option, exit status 1 (64 for a command-line usage error), no signal, under 1 GiB of
memory and 10 s."""
import sys
from pathlib import Path

import pytest

from distillcli import distill_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
import corpus  # noqa: E402

CASES = corpus.all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_a_clear_error(case, tmp_path):
    outcome = corpus.run_case(distill_binary(), case, tmp_path / "case")
    problems = outcome.problems(case)
    assert not problems, f"{case.id}: {'; '.join(problems)}\nstderr: {outcome.stderr[-2000:]}"


def test_corpus_is_broad():
    families = {c.family for c in CASES}
    assert len(CASES) >= 150 and len(families) >= 6, (len(CASES), sorted(families))
