"""bench/results.md from the sections' JSON (bench/results/*.json, one per section run),
and the targets (issues 21, 15, 16, 18 and 9), each met or missed and by how much."""
from __future__ import annotations

import json
import os
import statistics
import time

from bench.measure import Bench, Ratio, Summary

FLOOR = "floor"  # bench/runtime.py's bare interpreter candidate

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "results.md")
MIB = 1024

NS = "-ns"  # the benchmarks run in one mount namespace without the cgroup2 mount (bench/samens.py)
OLD_CRUN = "crun, old method (wrapper median subtracted)"  # bench/runtime.py's label

# (issue, label, bench, A, B or None, limit, kind). kind "ratio": median of the per-round
# ratios A/B against limit; "abs": median(A) (seconds or KiB) against limit; "diff": the
# median of the per-round differences A − B. limit None: measured and reported, no target.
TARGETS = [
    ("21", "`run /bin/true` ≤ 1.0× crun, wall (one namespace)", "run" + NS, "pyrun", "crun", 1.0, "ratio"),
    ("21", "`run /bin/true` ≤ 1.5× crun, CPU (one namespace)", "run" + NS + "-cpu", "pyrun", "crun", 1.5, "ratio"),
    ("21", "`run /bin/true` ≤ 0.85× runc, wall (host)", "run", "pyrun", "runc", 0.85, "ratio"),
    ("21", "`run /bin/true` ≤ 0.85× runc, wall (one namespace)", "run" + NS, "pyrun", "runc", 0.85, "ratio"),
    ("21", "`run /bin/true` vs crun, old method (wrapper median subtracted; no longer the target's measure)",
     "run", "pyrun", OLD_CRUN, None, "ratio"),
    ("21", "`run` with Podman's resources ≤ 1.0× crun, wall (one namespace)", "run-resources" + NS, "pyrun",
     "crun", 1.0, "ratio"),
    ("21", "`run` with Podman's resources ≤ 1.5× crun, CPU (one namespace)", "run-resources" + NS + "-cpu",
     "pyrun", "crun", 1.5, "ratio"),
    ("21", "`run` with Podman's resources ≤ 0.85× runc, wall (host)", "run-resources", "pyrun", "runc", 0.85, "ratio"),
    *[("21", f"`{c}` ≤ 1.25× the bare interpreter{' (100 containers present)' if c == 'list' else ''}",
       "commands", f"pyrun:{c}", f"floor:{c}", 1.25, "ratio") for c in ("start", "state", "kill", "delete", "list")],
    ("21", "`exec /bin/true` ≤ 0.7× runc", "exec", "pyrun", "runc", 0.7, "ratio"),
    ("21", "20 concurrent `run /bin/true` ≤ 0.9× runc", "concurrent", "pyrun", "runc", 0.9, "ratio"),
    ("21", "peak RSS of `run /bin/true` ≤ 1.1× runc", "rss-run", "pyrun", "runc", 1.1, "ratio"),
    ("16", "`create` with Podman's resources ≤ 1.0× runc", "create-resources", "pyrun", "runc", 1.0, "ratio"),
    *[("15", f"pyrun-launcher's read-only exec, cost on `{c}` (sealed − not sealed copy)", "launcher",
       f"{c}, copy with pyrun-launcher (sealed)", f"{c}, copy without it (not sealed)", None, "diff")
      for c in ("run", "state")],
    *[("18/21", f"`{caller} run --rm IMG true` vs {peer}{where}", bench, "pyrun", peer, None, "ratio")
      for caller, b in (("podman", "podman-run"), ("ctr", "ctr-run"))
      for bench, where in ((b, " (host)"), (b + NS, " (the caller in one namespace)"))
      for peer in ("runc", "crun")],
    ("19", "pull+unpack Debian ≤ 0.30× skopeo+umoci", "pull-unpack-debian", "imagetool:total",
     "skopeo+umoci:total", 0.30, "ratio"),
    ("19", "unpack alone of Debian ≤ 0.25× umoci (the same layout for both)", "unpack-debian", "imagetool",
     "skopeo+umoci", 0.25, "ratio"),
    ("19", "pull+unpack busybox ≤ 1.0× skopeo+umoci", "pull-unpack-busybox", "imagetool:total",
     "skopeo+umoci:total", 1.0, "ratio"),
    ("9", "`run /bin/true` ≤ 1.0× runc", "run", "pyrun", "runc", 1.0, "ratio"),
    ("9", "`exec /bin/true` ≤ 1.0× runc", "exec", "pyrun", "runc", 1.0, "ratio"),
    ("9", "init while `created` ≤ 15 MiB RSS", "init-rss", "pyrun", None, 15 * MIB, "abs"),
    ("9", "pull+unpack Debian ≤ 0.5× skopeo+umoci", "pull-unpack-debian", "imagetool:total",
     "skopeo+umoci:total", 0.5, "ratio"),
    ("9", "pull+unpack busybox ≤ 1.5× skopeo+umoci", "pull-unpack-busybox", "imagetool:total",
     "skopeo+umoci:total", 1.5, "ratio"),
    ("9", "no-change re-pull (Debian) ≤ 0.3 s", "repull-debian", "imagetool", None, 0.3, "abs"),
    ("9", "no-change re-pull (busybox) ≤ 0.3 s", "repull-busybox", "imagetool", None, 0.3, "abs"),
]


def save_section(section: str, benches: list[Bench], meta: dict) -> None:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{section}.json"), "w") as f:
        json.dump({"meta": meta, "benches": [b.to_json() for b in benches]}, f, indent=1)


def load_sections() -> dict[str, dict]:
    out = {}
    if not os.path.isdir(RESULTS_DIR):
        return out
    order = {"runtime": 0, "callers": 1, "images": 2, "profile": 3}
    for name in sorted(os.listdir(RESULTS_DIR), key=lambda n: (order.get(n[:-5], 9), n)):
        if name.endswith(".json"):
            with open(os.path.join(RESULTS_DIR, name)) as f:
                d = json.load(f)
            d["benches"] = [Bench.from_json(b) for b in d["benches"]]
            out[name[:-5]] = d
    return out


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit == "KiB":
        return f"{value / MIB:.1f} MiB"
    return f"{value:g} {unit}"


def _missing(bench: Bench, cand: str) -> str:
    reason = bench.skipped.get(cand.split(":")[0])
    return f"{cand}: {reason}" if reason else f"{cand} not measured"


def evaluate(benches: dict[str, Bench]) -> list[dict]:
    rows = []
    for issue, label, name, a, b, limit, kind in TARGETS:
        bench = benches.get(name)
        row = {"issue": issue, "target": label, "measured": "not measured", "verdict": "not measured"}
        rows.append(row)
        if bench is None:
            continue
        absent = [c for c in (a, b) if c is not None and c not in bench.values]
        if absent:
            row["measured"] = "; ".join(_missing(bench, c) for c in absent)
            continue
        unit = bench.unit
        if kind == "ratio":
            r = Ratio.of(bench.values[a], bench.values[b])
            value = r.median
            row["measured"] = (f"{value:.2f}× ({fmt(Summary.of(bench.values[a]).median, unit)} vs "
                               f"{fmt(Summary.of(bench.values[b]).median, unit)})")
        elif kind == "diff":
            value = statistics.median(x - y for x, y in zip(bench.values[a], bench.values[b]))
            row["measured"] = (f"{'+' if value >= 0 else '−'}{fmt(abs(value), unit)} "
                               f"({fmt(Summary.of(bench.values[a]).median, unit)} vs "
                               f"{fmt(Summary.of(bench.values[b]).median, unit)})")
        else:
            value = Summary.of(bench.values[a]).median
            row["measured"] = fmt(value, unit)
        if limit is None:
            row["verdict"] = "reported (no limit)"
        elif value <= limit:
            row["verdict"] = f"**met** ({(1 - value / limit) * 100:.0f}% under)"
        else:
            over = fmt(value - limit, unit) if kind == "abs" else f"{value - limit:.2f}×"
            row["verdict"] = f"**missed** by {(value / limit - 1) * 100:.0f}% ({over} over)"
    return rows


def _med(benches: dict[str, Bench], name: str, cand: str) -> float | None:
    b = benches.get(name)
    return Summary.of(b.values[cand]).median if b and b.values.get(cand) else None


def _diff(b: Bench, x: str, y: str) -> float:
    return statistics.median(p - q for p, q in zip(b.values[x], b.values[y]))


def why(benches: dict[str, Bench]) -> list[str]:
    """What the measurements say costs the time, for each target family."""
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    signed = lambda v: f"{'+' if v >= 0 else '−'}{abs(v) * 1000:.1f} ms"  # noqa: E731
    med = lambda b, c: Summary.of(b.values[c]).median  # noqa: E731
    out = []
    for name, where in (("run" + NS, "in one namespace"), ("run", "on the host")):
        b, cpu = benches.get(name), benches.get(name + "-cpu")
        if not b or "pyrun" not in b.values or FLOOR not in b.values:
            continue
        peers = [p for p in ("crun", "runc") if p in b.values]
        line = (f"- `run /bin/true` {where}: pyrun {ms(med(b, 'pyrun'))}, "
                + ", ".join(f"{p} {ms(med(b, p))}" for p in peers)
                + f"; the bare interpreter alone, same rounds, {ms(med(b, FLOOR))}"
                + "".join(f" ({Ratio.of(b.values[FLOOR], b.values[p]).median:.2f}× {p})" for p in peers[:1]))
        if cpu and "pyrun" in cpu.values:
            line += (f". CPU: pyrun {ms(med(cpu, 'pyrun'))}, "
                     + ", ".join(f"{p} {ms(med(cpu, p))}" for p in peers if p in cpu.values)
                     + (f", the interpreter {ms(med(cpu, FLOOR))}" if FLOOR in cpu.values else ""))
        out.append(line + ".")
    floor = benches.get("floor")
    if floor:
        names = list(floor.values)
        bare, _, imports, real = (med(floor, n) for n in names[:4])
        out.append(f"- `run`, split (profile section): the bare interpreter {ms(bare)}, pyrun's imports "
                   f"+{ms(imports - bare)}, the work itself +{ms(real - imports)} (total {ms(real)}). The "
                   "cProfile and strace tables below split the work.")
    c = benches.get("commands")
    if c and "pyrun:state" in c.values and "floor:state" in c.values:
        parts = [f"{cmd} {ms(med(c, f'pyrun:{cmd}'))} ({signed(_diff(c, f'pyrun:{cmd}', f'floor:{cmd}'))})"
                 for cmd in ("start", "state", "kill", "delete", "list") if f"pyrun:{cmd}" in c.values]
        out.append(f"- commands, pyrun's median and, in brackets, its excess over the bare interpreter "
                   f"measured beside it ({ms(med(c, 'floor:state'))}): " + ", ".join(parts)
                   + ". The excess is imports and pyrun's own work (the profile's cProfile and `state` "
                   "import lines); the interpreter's own start is a floor no change in runtime/ lowers.")
    cr = benches.get("create-resources")
    if cr and "pyrun" in cr.values and "pyrun, no resources" in cr.values:
        out.append(f"- `create` with Podman's resources: pyrun {ms(med(cr, 'pyrun'))} "
                   f"({signed(_diff(cr, 'pyrun', 'pyrun, no resources'))} for the resources)"
                   + (f", runc {ms(med(cr, 'runc'))} ({signed(_diff(cr, 'runc', 'runc, no resources'))})"
                      if "runc" in cr.values else "") + ".")
    ex_p, ex_r = _med(benches, "exec", "pyrun"), _med(benches, "exec", "runc")
    if ex_p and ex_r:
        out.append(f"- `exec`: {ms(ex_p)} vs runc {ms(ex_r)}.")
    cc, ccpu = benches.get("concurrent"), benches.get("concurrent-cpu")
    if cc and ccpu and "pyrun" in ccpu.values and "runc" in ccpu.values:
        out.append(f"- 20 concurrent `run` on {os.cpu_count()} CPUs: pyrun {ms(med(cc, 'pyrun'))} wall, "
                   f"{ms(med(ccpu, 'pyrun'))} CPU in all; runc {ms(med(cc, 'runc'))} wall, "
                   f"{ms(med(ccpu, 'runc'))} CPU: the batch is CPU-bound, so its wall ratio follows the "
                   "CPU each run costs.")
    for name in ("podman-run", "ctr-run", "podman-run" + NS, "ctr-run" + NS):
        b = benches.get(name)
        if b and "pyrun" in b.values and "runc" in b.values:
            out.append(f"- {b.title}: pyrun − runc = {signed(_diff(b, 'pyrun', 'runc'))} per call "
                       f"(pyrun {ms(med(b, 'pyrun'))})"
                       + (f"; pyrun − crun = {signed(_diff(b, 'pyrun', 'crun'))}" if "crun" in b.values else "")
                       + "".join(f"; crun {why}" for why in b.skipped.values()) + ".")
    for name in ("debian", "busybox"):
        b = benches.get(f"pull-unpack-{name}")
        if not b or not b.values.get("imagetool:total"):
            continue
        t, pl, up = (med(b, f"imagetool:{p}") for p in ("total", "pull", "unpack"))
        sp, su = (med(b, f"skopeo+umoci:{p}") for p in ("pull", "unpack"))
        out.append(f"- pull+unpack {name}: imagetool pull {ms(pl)} vs skopeo {ms(sp)}, unpack {ms(up)} vs umoci "
                   f"{ms(su)}; unpack is {up / t * 100:.0f}% of imagetool's total")
    return out


def bench_table(bench: Bench) -> list[str]:
    lines = [f"### {bench.title}", "", "| candidate | median | min | max | n |", "|---|---:|---:|---:|---:|"]
    for cand, values in bench.values.items():
        if not values:
            continue
        s = Summary.of(values)
        lines.append(f"| {cand} | {fmt(s.median, bench.unit)} | {fmt(s.min, bench.unit)} | "
                     f"{fmt(s.max, bench.unit)} | {s.n} |")
    for cand, why in bench.skipped.items():
        lines.append(f"| {cand} | {why} | | | |")
    ratio_lines = []
    for a, b in bench.ratios:
        r = bench.ratio(a, b)
        if r is not None:
            ratio_lines.append(f"- {a} / {b}: **{r.median:.2f}×** (per-round ratios {r.min:.2f}–{r.max:.2f}; "
                               f"ratio of medians {r.of_medians:.2f})")
    if ratio_lines:
        lines += [""] + ratio_lines
    if bench.notes:
        lines += [""] + [f"- note: {n}" for n in bench.notes]
    return lines + [""]


def raw_block(bench: Bench) -> list[str]:
    scale, unit = (1000, "ms") if bench.unit == "s" else (1, bench.unit)
    lines = [f"{bench.name} [{unit}]"]
    for cand, values in bench.values.items():
        lines.append(f"  {cand}: " + " ".join(f"{v * scale:.2f}" if unit == "ms" else f"{v:g}" for v in values))
    return lines


def summary_rows(benches: list[Bench]) -> list[str]:
    lines = ["| benchmark | pyrun/runc | pyrun/crun | pyrun/interpreter | imagetool/(skopeo+umoci) |",
             "|---|---:|---:|---:|---:|"]
    for bench in benches:
        cells = []
        for a, b in (("pyrun", "runc"), ("pyrun", "crun"), ("pyrun", FLOOR), ("imagetool", "skopeo+umoci")):
            pairs = [(x, y) for x, y in bench.ratios if x.split(":")[0] == a and y.split(":")[0] == b]
            cells.append(", ".join(
                (f"{x.split(':')[1]} " if ":" in x else "") + f"{bench.ratio(x, y).median:.2f}×"
                for x, y in pairs if bench.ratio(x, y) is not None) or "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {bench.title} | " + " | ".join(cells) + " |")
    return lines


def write(profile_md: str | None = None) -> str:
    sections = load_sections()
    all_benches = [b for s in sections.values() for b in s["benches"]]
    by_name = {b.name: b for b in all_benches}
    out = ["# bench results", "",
           "Written by `make bench` (`python -m bench`); every number below comes from the runs "
           "listed under *Runs*. Candidates are interleaved (order rotated every round), a warm-up "
           "round is discarded, ratios are the median of per-round ratios A/B (each pair measured "
           "back to back). Raw numbers at the end. How to read and rerun: bench/README.md.", "",
           "## Runs", ""]
    for name, s in sections.items():
        m = s["meta"]
        out.append(f"- `{name}`: {m.get('when')}, {m.get('mode')} mode, {m.get('host')}; "
                   f"{m.get('versions', '')}")
        for note in m.get("notes", []):
            out.append(f"  - {note}")
    out += ["", "## Targets", "",
            "Issue 21's targets, the speed items of issues 15, 16, 18 and 19, and issue 9's earlier ones. "
            "*One namespace*: pyrun, crun and runc measured in the same private mount namespace without "
            "the cgroup2 mount (bench/samens.py); *host*: as orchestrators run them here.", "",
            "| issue | target | measured | verdict |", "|---|---|---|---|"]
    out += [f"| {r['issue']} | {r['target']} | {r['measured']} | {r['verdict']} |" for r in evaluate(by_name)]
    reasons = why(by_name)
    if reasons:
        out += ["", "**What costs the time** (from the numbers below and the profile):", ""] + reasons
    out += ["", "## Ratios at a glance", ""] + summary_rows(all_benches) + [""]
    if profile_md:
        out += [profile_md, ""]
    elif os.path.exists(os.path.join(HERE, "profiles", "summary.md")):
        with open(os.path.join(HERE, "profiles", "summary.md")) as f:
            out += [f.read().rstrip(), ""]
    unpack_profile = sections.get("images", {}).get("meta", {}).get("unpack_profile")
    if unpack_profile:
        out += ["## Profile: where an unpack's time goes, per tar entry", ""] + unpack_profile + [""]
    out += ["## Benchmarks", ""]
    for bench in all_benches:
        out += bench_table(bench)
    out += ["## Raw numbers", "", "```"]
    for bench in all_benches:
        out += raw_block(bench)
    out += ["```", ""]
    text = "\n".join(out)
    with open(RESULTS_MD, "w") as f:
        f.write(text)
    return text


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
