"""Results out: the table on the terminal, the JSON report, the comparison in docs/conformance.md."""
import json
import os

from conformance.suite import FAIL, PASS, SKIP, Result

SPEC = "https://github.com/opencontainers/runtime-spec/blob/main/"


def table(results: list[Result]) -> str:
    """case | section | outcome (with the reason of a fail or skip), one line each."""
    rows = [(r.name, r.section, r.outcome + (f": {r.reason}" if r.reason else "")) for r in results]
    w0 = max([len("case")] + [len(r[0]) for r in rows])
    w1 = max([len("section")] + [len(r[1]) for r in rows])
    lines = [f"{'case':<{w0}}  {'section':<{w1}}  outcome", f"{'-' * w0}  {'-' * w1}  -------"]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def summary(results: list[Result]) -> dict:
    counts = {PASS: 0, FAIL: 0, SKIP: 0}
    for r in results:
        counts[r.outcome] += 1
    counts["total"] = len(results)
    return counts


def summary_line(results: list[Result], seconds: float) -> str:
    c = summary(results)
    return f"{c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped of {c['total']} in {seconds:.1f} s"


def write_json(path: str, runtime: str, version: str, results: list[Result], seconds: float,
               environment: dict) -> None:
    doc = {
        "runtime": runtime,
        "version": version,
        "environment": environment,
        "seconds": round(seconds, 1),
        "summary": summary(results),
        "results": [{"name": r.name, "section": r.section, "outcome": r.outcome,
                     "reason": r.reason, "seconds": round(r.seconds, 2)} for r in results],
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def section_link(section: str) -> str:
    """'config.md#Mounts' → a markdown link to the spec's heading."""
    doc, _, heading = section.partition("#")
    if not doc.endswith(".md"):
        return section
    anchor = heading.lower().replace(" ", "-")
    anchor = "".join(ch for ch in anchor if ch.isalnum() or ch in "-_")
    return f"[{section}]({SPEC}{doc}#{anchor})"
