"""The case registry and the outcomes.

A case is a function of a harness.Context, registered with @case(name, section). It returns to
pass, and calls ctx.check / ctx.fail / ctx.skip to decide otherwise (runner.py runs them).
"""
import dataclasses
from typing import Callable

PASS, FAIL, SKIP = "pass", "fail", "skip"
DEFAULT_TIMEOUT = 30.0


class Failed(Exception):
    pass


class Skipped(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    section: str
    func: Callable
    timeout: float


@dataclasses.dataclass
class Result:
    name: str
    section: str
    outcome: str
    reason: str
    seconds: float


CASES: list[Case] = []


def case(name: str, section: str, timeout: float = DEFAULT_TIMEOUT):
    """Register a case: name after the spec's section, section as 'file.md#Heading'."""
    def register(func):
        if any(c.name == name for c in CASES):
            raise ValueError(f"two cases named {name}")
        CASES.append(Case(name, section, func, timeout))
        return func
    return register
