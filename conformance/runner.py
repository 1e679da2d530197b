"""Selecting cases and running them, in parallel, each bounded by its timeout.

An exception a case did not mean (a suite error) fails it with the exception's text and where it
was raised: a case never passes by accident.
"""
import concurrent.futures
import fnmatch
import time
import traceback

import conformance.cases  # noqa: F401  (importing it registers every case)
from conformance.harness import Context
from conformance.suite import CASES, FAIL, PASS, SKIP, Case, Failed, Result, Skipped

# A case's calls are bounded by its deadline; past it by this much, the runner stops waiting.
GRACE = 15.0


def select(patterns: list[str]) -> list[Case]:
    """The cases whose name or section contains a pattern (or matches it as a glob); all if none."""
    if not patterns:
        return list(CASES)

    def wanted(c: Case) -> bool:
        return any(p in c.name or p in c.section or fnmatch.fnmatchcase(c.name, p) for p in patterns)
    return [c for c in CASES if wanted(c)]


def run_case(run, index: int, c: Case) -> Result:
    start = time.monotonic()
    ctx = Context(run, c, index)
    outcome, reason = PASS, ""
    try:
        c.func(ctx)
    except Failed as e:
        outcome, reason = FAIL, str(e)
    except Skipped as e:
        outcome, reason = SKIP, str(e)
    except Exception as e:  # a suite error fails the case, with where it happened
        frame = traceback.extract_tb(e.__traceback__)[-1]
        outcome, reason = FAIL, f"suite error: {type(e).__name__}: {e} ({frame.name}:{frame.lineno})"
    finally:
        left = ctx.close()
    if left and outcome == PASS:
        outcome, reason = FAIL, left
    return Result(c.name, c.section, outcome, one_line(reason), time.monotonic() - start)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def run_all(run, cases: list[Case], jobs: int, progress=None) -> list[Result]:
    """Every case, `jobs` at a time; results in the cases' order."""
    results: dict[int, Result] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="case")
    started: dict[concurrent.futures.Future, tuple[int, Case, float]] = {}
    try:
        pending = list(enumerate(cases))
        while pending or started:
            while pending and len(started) < jobs:
                i, c = pending.pop(0)
                fut = pool.submit(run_case, run, i, c)
                started[fut] = (i, c, time.monotonic())
            done, _ = concurrent.futures.wait(list(started), timeout=0.5,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                i, c, _ = started.pop(fut)
                results[i] = fut.result()
                if progress:
                    progress(results[i])
            now = time.monotonic()
            for fut, (i, c, t0) in list(started.items()):
                if now - t0 > c.timeout + GRACE:  # the case's own bounds failed; stop waiting
                    started.pop(fut)
                    results[i] = Result(c.name, c.section, FAIL, f"timed out after {c.timeout:.0f} s",
                                        now - t0)
                    if progress:
                        progress(results[i])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [results[i] for i in sorted(results)]
