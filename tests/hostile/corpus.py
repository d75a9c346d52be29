"""The hostile corpus: crafted inputs that must each end in a clear error, never a crash.

Every case is a command line for the real `distill` binary plus the files it reads, written into
a fresh folder. `run_case` runs it and checks what the README promises for untrusted input:
  - the exit status is the documented one (1 for a bad file or value; 64 for a command-line usage error),
    never a signal;
  - stderr names the file or option at fault (each `expect` string appears in it);
  - the process stays under `MAX_RSS_BYTES` of memory and `MAX_SECONDS` of time.
The families live in `cases_*.py` beside this file; `run.py` runs them all against any build and prints a
table, and `tests/interop/test_hostile.py` runs them in the test suite.
"""
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

MAX_RSS_BYTES = 1 << 30
MAX_SECONDS = 10.0
# The address-space limit each case runs under (util-linux's prlimit): an attempt to allocate more fails (and is
# then a crash the test reports) instead of taking the test machine's memory.
ADDRESS_SPACE_LIMIT = 8 << 30

GNU_TIME = "/usr/bin/time"  # Debian's `time` package; scripts/setup-tests.sh installs it

FileContent = Union[bytes, str, Callable[[Path], None]]


@dataclass
class Case:
    """One hostile input: `args` for `distill`, the `files` it reads (name -> bytes, text, or a function that
    creates the file at the given path: a FIFO, a folder, ...), and the strings stderr must contain."""
    family: str
    name: str
    args: List[str]
    files: Dict[str, FileContent] = field(default_factory=dict)
    expect: List[str] = field(default_factory=list)
    exit_codes: tuple = (1, 64)
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def id(self):
        return f"{self.family}/{self.name}"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_bytes: int
    timed_out: bool
    time_limit: float = MAX_SECONDS

    def problems(self, case: Case) -> List[str]:
        """What is wrong with this outcome for `case` (empty when the promise held)."""
        found = []
        if self.timed_out:
            found.append(f"did not finish in {self.time_limit * 2:.0f} s")
        elif self.returncode < 0:
            found.append(f"killed by signal {-self.returncode}")
        elif self.returncode not in case.exit_codes:
            found.append(f"exit status {self.returncode}, expected one of {case.exit_codes}")
        if self.seconds > self.time_limit and not self.timed_out:
            found.append(f"took {self.seconds:.1f} s (limit {self.time_limit:.0f})")
        if self.max_rss_bytes > MAX_RSS_BYTES:
            found.append(f"peak memory {self.max_rss_bytes >> 20} MiB (limit {MAX_RSS_BYTES >> 20})")
        for text in case.expect:
            if text not in self.stderr:
                found.append(f"stderr does not mention {text!r}")
        if "Fatal error" in self.stderr or "Stack dump" in self.stderr or "Crash" in self.stderr:
            found.append("stderr shows a crash report")
        if len(self.stderr) > 20_000:
            found.append(f"stderr is {len(self.stderr)} characters long (errors are capped)")
        return found


def materialise(case: Case, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)


def run_case(binary: Path, case: Case, folder: Path, time_factor: float = 1.0) -> Outcome:
    """Runs `case` in `folder` (created, with the case's files) and measures its time and peak memory;
    `time_factor` scales the time limit (a debug build is several times slower than the release build)."""
    time_limit = MAX_SECONDS * time_factor
    materialise(case, folder)
    env = dict(os.environ)
    env.update({"SWIFT_BACKTRACE": "enable=no", "DISTILL_THREADS": "2"})
    env.update(case.env)
    out_path, err_path, rss_path = folder / ".stdout", folder / ".stderr", folder / ".maxrss"
    # GNU time starts the binary from its own small process and reports the binary's own peak RSS (a child
    # forked from this test runner would count the runner's memory too).
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.monotonic()
        process = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", str(rss_path), "prlimit", f"--as={ADDRESS_SPACE_LIMIT}", "--core=0", str(binary), *case.args], cwd=folder, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = start + time_limit * 2
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                os.killpg(process.pid, 9)
                pid, status, usage = os.wait4(process.pid, 0)
                timed_out = True
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
    read = lambda p: p.read_bytes().decode("utf-8", "replace")
    stderr = read(err_path)
    # GNU time exits with the binary's status, or 128 + the signal, and says so on stderr.
    code = os.waitstatus_to_exitcode(status)
    signal = re.search(r"Command terminated by signal (\d+)", stderr)
    if signal:
        code = -int(signal.group(1))
    stderr = re.sub(r"Command (terminated by signal|exited with non-zero status) \d+\n?", "", stderr)
    rss_text = read(rss_path).strip().splitlines() if rss_path.exists() else []
    rss = int(rss_text[-1]) * 1024 if rss_text and rss_text[-1].isdigit() else usage.ru_maxrss * 1024
    return Outcome(code, read(out_path), stderr, seconds, rss, timed_out, time_limit)


def all_cases() -> List[Case]:
    """Every family's cases, in a stable order."""
    import importlib
    cases = []
    here = Path(__file__).resolve().parent
    for module_path in sorted(here.glob("cases_*.py")):
        module = importlib.import_module(module_path.stem)
        cases += module.cases()
    names = [c.id for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate case names: {sorted(duplicates)}"
    return cases
