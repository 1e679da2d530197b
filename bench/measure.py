"""Timing and memory of whole processes, interleaved runs, and the statistics on them.

A measurement is one child process: wall time from just before fork to just after
its exit was reaped, and its CPU time (user + system) and peak RSS as wait4(2)
reports them (the process and every descendant it reaped; ru_maxrss across
execve). Runs of the candidates are interleaved, with the order rotated every
round, so drift on this shared machine spreads over all candidates instead of
landing on one.
"""
from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

# Reap every exited child, as the tests' host checks do (call only while no Popen of ours is
# in flight: it would lose its child's status).
from tests.support.hostsnap import reap as reap_zombies  # noqa: F401


class BenchError(Exception):
    """A command under measurement failed; one line naming it and its stderr.
    `detail` is the part after the command: "exit N: <last stderr line>"."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


@dataclass
class Sample:
    wall: float          # seconds
    maxrss_kib: int = 0  # peak RSS (rss=True only): the process and the children it reaped, KiB
    returncode: int = 0
    cpu: float = 0.0     # seconds of user + system time of the process and the children it reaped


CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
_LAUNCHER = os.path.join(CACHE, "maxrss")


def launcher() -> str:
    """bench/maxrss.c, compiled once into bench/.cache (see the C file for why)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "maxrss.c")
    if not os.path.exists(_LAUNCHER) or os.path.getmtime(_LAUNCHER) < os.path.getmtime(src):
        os.makedirs(CACHE, exist_ok=True)
        p = subprocess.run(["gcc", "-O2", "-static", "-o", _LAUNCHER + ".tmp", src],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise BenchError(f"gcc {src}: {p.stderr.strip()[-200:]}")
        os.replace(_LAUNCHER + ".tmp", _LAUNCHER)
    return _LAUNCHER


def run(argv: list[str], *, check: bool = True, timeout: float = 120.0, env: dict | None = None,
        cwd: str | None = None, stdout=subprocess.DEVNULL, rss: bool = False) -> Sample:
    """Run argv to completion; stdin is /dev/null, stderr a file (a detached
    container keeps inherited pipes open long after the runtime exits).
    rss=True runs it under the maxrss launcher (adds a fork; not for timing)."""
    rss_file = None
    if rss:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        argv = [launcher(), rss_file, *argv]
    try:
        sample = _run(argv, check, timeout, env, cwd, stdout)
        if rss_file:
            with open(rss_file) as f:
                sample.maxrss_kib = int(f.read().strip() or 0)
        return sample
    finally:
        if rss_file:
            os.unlink(rss_file)


def _run(argv, check, timeout, env, cwd, stdout) -> Sample:
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err,
                             env=env, cwd=cwd)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        p.returncode = code  # reaped here: keep Popen from waiting on a recycled pid
        if check and code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            detail = f"exit {code}: {lines[-1] if lines else 'no stderr'}"
            raise BenchError(f"{' '.join(argv[:6])}: {detail}", detail)
    return Sample(wall, 0, code, usage.ru_utime + usage.ru_stime)


def run_many(argvs: list[list[str]], timeout: float = 120.0) -> float:
    """Start every argv at once, wait for all; the wall time of the whole batch."""
    errs = [tempfile.TemporaryFile() for _ in argvs]
    procs = []
    t0 = time.perf_counter()
    try:
        for argv, err in zip(argvs, errs):
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=err))
        deadline = t0 + timeout
        failed = []
        for p, err in zip(procs, errs):
            try:
                code = p.wait(max(0.1, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                raise BenchError(f"{' '.join(p.args[:6])}: still running after {timeout:.0f} s") from None
            if code != 0:
                err.seek(0)
                failed.append(f"{' '.join(p.args[:6])}: exit {code}: {err.read().decode(errors='replace').strip()[-200:]}")
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for err in errs:
            err.close()
    if failed:
        raise BenchError(failed[0])
    return wall


def interleave(candidates: dict[str, Callable[[int], object]], n: int, warmup: int = 1
               ) -> dict[str, list]:
    """Call each candidate's fn(i) for rounds i = 0 … warmup+n-1, rotating the order
    each round (A B C, B C A, …); the warm-up rounds' results are discarded."""
    names = list(candidates)
    out: dict[str, list] = {name: [] for name in names}
    for i in range(warmup + n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            result = candidates[name](i)
            if i >= warmup:
                out[name].append(result)
    return out


@dataclass
class Summary:
    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Summary":
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass
class Ratio:
    """A / B: the median of the per-round ratios (each pair measured back to back)
    and its spread; `of_medians` is median(A) / median(B) for comparison."""
    median: float
    min: float
    max: float
    of_medians: float

    @classmethod
    def of(cls, a: list[float], b: list[float]) -> "Ratio":
        if len(a) != len(b) or not a:
            raise ValueError(f"ratio needs two equally long, non-empty series ({len(a)} vs {len(b)})")
        pairs = [x / y for x, y in zip(a, b) if y > 0]
        if not pairs:
            raise ValueError("ratio against an all-zero series")
        return cls(statistics.median(pairs), min(pairs), max(pairs),
                   statistics.median(a) / statistics.median(b))


@dataclass
class Bench:
    """One benchmark's outcome: per candidate a list of values (seconds or KiB)."""
    name: str
    title: str
    unit: str                                   # "s" or "KiB"
    values: dict[str, list[float]] = field(default_factory=dict)
    ratios: list[tuple[str, str]] = field(default_factory=list)   # (A, B) pairs to report
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)         # candidate → reason

    def summary(self, candidate: str) -> Summary:
        return Summary.of(self.values[candidate])

    def ratio(self, a: str, b: str) -> Ratio | None:
        if a not in self.values or b not in self.values:
            return None
        return Ratio.of(self.values[a], self.values[b])

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "unit": self.unit, "values": self.values,
                "ratios": [list(r) for r in self.ratios], "notes": self.notes, "skipped": self.skipped}

    @classmethod
    def from_json(cls, d: dict) -> "Bench":
        return cls(d["name"], d["title"], d["unit"], d["values"], [tuple(r) for r in d["ratios"]],
                   d["notes"], d["skipped"])


# -- process housekeeping --------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Containers' inits outlive the `create` that made them; as a subreaper we
    inherit them (as conmon does), so we can wait for them and leave no zombie."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def wait_exit(pid: int, timeout: float = 30.0) -> None:
    """Wait until `pid` has exited: reap it if it is our child (we are a subreaper),
    else poll /proc until it is gone or a zombie."""
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if data[data.rfind(b")") + 2:][:1] in (b"Z", b"X"):
            return
        time.sleep(0.0005)
    raise BenchError(f"process {pid} did not exit within {timeout} s")


def proc_memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process, KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm
