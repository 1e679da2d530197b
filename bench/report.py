"""bench/results.md from the sections' JSON (bench/results/*.json, one per section run),
and the targets of issue 9, each met or missed and by how much."""
from __future__ import annotations

import json
import os
import statistics
import time

from bench.measure import Bench, Ratio, Summary

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "results.md")
MIB = 1024

# (label, bench, A, B or None, limit, kind): kind "ratio" compares median(A/B per round) with
# limit; "abs" compares median(A) (seconds or KiB) with limit.
TARGETS = [
    ("`pyrun run /bin/true` ≤ 1.0× runc", "run", "pyrun", "runc", 1.0, "ratio"),
    ("`pyrun run /bin/true` ≤ 1.6× crun", "run", "pyrun", "crun", 1.6, "ratio"),
    ("`pyrun exec /bin/true` ≤ 1.0× runc", "exec", "pyrun", "runc", 1.0, "ratio"),
    ("init while `created` ≤ 15 MiB RSS", "init-rss", "pyrun", None, 15 * MIB, "abs"),
    ("pull+unpack Debian ≤ 0.5× skopeo+umoci", "pull-unpack-debian", "imagetool:total",
     "skopeo+umoci:total", 0.5, "ratio"),
    ("pull+unpack busybox ≤ 1.5× skopeo+umoci", "pull-unpack-busybox", "imagetool:total",
     "skopeo+umoci:total", 1.5, "ratio"),
    ("no-change re-pull (Debian) ≤ 0.3 s", "repull-debian", "imagetool", None, 0.3, "abs"),
    ("no-change re-pull (busybox) ≤ 0.3 s", "repull-busybox", "imagetool", None, 0.3, "abs"),
]


def save_section(section: str, benches: list[Bench], meta: dict) -> None:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{section}.json"), "w") as f:
        json.dump({"meta": meta, "benches": [b.to_json() for b in benches]}, f, indent=1)


def load_sections() -> dict[str, dict]:
    out = {}
    if not os.path.isdir(RESULTS_DIR):
        return out
    order = {"runtime": 0, "images": 1}
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


def evaluate(benches: dict[str, Bench]) -> list[dict]:
    rows = []
    for label, name, a, b, limit, kind in TARGETS:
        bench = benches.get(name)
        row = {"target": label, "measured": "not measured", "verdict": "not measured"}
        if bench is None:
            rows.append(row)
            continue
        if a not in bench.values:
            reason = bench.skipped.get(a.split(":")[0], "no numbers")
            row.update(measured=reason, verdict="not measured")
            rows.append(row)
            continue
        if kind == "ratio":
            if b not in bench.values:
                row.update(measured=f"{b} not measured", verdict="not measured")
                rows.append(row)
                continue
            r = Ratio.of(bench.values[a], bench.values[b])
            value = r.median
            row["measured"] = (f"{value:.2f}× ({fmt(Summary.of(bench.values[a]).median, bench.unit)} vs "
                               f"{fmt(Summary.of(bench.values[b]).median, bench.unit)})")
        else:
            value = Summary.of(bench.values[a]).median
            row["measured"] = fmt(value, bench.unit)
        if value <= limit:
            row["verdict"] = f"**met** ({(1 - value / limit) * 100:.0f}% under)"
        else:
            over = fmt(value - limit, bench.unit) if kind == "abs" else f"{value - limit:.2f}×"
            row["verdict"] = f"**missed** by {(value / limit - 1) * 100:.0f}% ({over} over)"
        rows.append(row)
    return rows


def _med(benches: dict[str, Bench], name: str, cand: str) -> float | None:
    b = benches.get(name)
    return Summary.of(b.values[cand]).median if b and b.values.get(cand) else None


def why(benches: dict[str, Bench]) -> list[str]:
    """What the measurements say costs the time, for each target family."""
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    out = []
    run_p, run_r, run_c = (_med(benches, "run", c) for c in ("pyrun", "runc", "crun"))
    floor = benches.get("floor")
    if run_p and floor:
        names = list(floor.values)
        bare, _, imports, real = (Summary.of(floor.values[n]).median for n in names[:4])
        out.append(f"- `run`: in the profile run, pyrun took {ms(real)}: the bare interpreter "
                   f"{ms(bare)}, pyrun's imports +{ms(imports - bare)}, the work itself +{ms(real - imports)}"
                   + (f"; runc's whole run is {ms(run_r)}" if run_r else "")
                   + (f", crun's {ms(run_c)} — the bare interpreter alone is {bare / run_c:.2f}× crun" if run_c else "")
                   + ". The cProfile and strace sections below split the work (waiting for the init's "
                   "set-up, the container's exit, delete).")
        if len(names) > 4:  # the same run without pyrun-launcher, interleaved with it
            sealed, unsealed = floor.values[names[3]], floor.values[names[4]]
            cost = statistics.median(a - b for a, b in zip(sealed, unsealed))
            out.append(f"- the interpreter exec'd from a read-only mount (pyrun-launcher, CVE-2019-5736): "
                       f"{'+' if cost >= 0 else '−'}{ms(abs(cost))} a call (median of per-round differences, "
                       f"sealed {ms(Summary.of(sealed).median)} vs not {ms(Summary.of(unsealed).median)}).")
    lc = benches.get("lifecycle")
    if lc and lc.values.get("pyrun:create") and lc.values.get("runc:create"):
        parts = ", ".join(f"{p} {ms(Summary.of(lc.values['pyrun:' + p]).median)} vs "
                          f"{ms(Summary.of(lc.values['runc:' + p]).median)}" for p in ("create", "start", "delete"))
        out.append(f"- per step, pyrun vs runc: {parts}: every extra command pays the interpreter "
                   "floor again, so start and delete, cheap in Go/C, cost most in ratio.")
    ex_p, ex_r = _med(benches, "exec", "pyrun"), _med(benches, "exec", "runc")
    if ex_p and ex_r:
        out.append(f"- `exec`: {ms(ex_p)} vs runc {ms(ex_r)}; the same interpreter + import floor applies.")
    for name in ("debian", "busybox"):
        b = benches.get(f"pull-unpack-{name}")
        if not b or not b.values.get("imagetool:total"):
            continue
        t, pl, up = (Summary.of(b.values[f"imagetool:{p}"]).median for p in ("total", "pull", "unpack"))
        sp, su = (Summary.of(b.values[f"skopeo+umoci:{p}"]).median for p in ("pull", "unpack"))
        out.append(f"- pull+unpack {name}: imagetool pull {ms(pl)} vs skopeo {ms(sp)}, unpack {ms(up)} vs umoci "
                   f"{ms(su)}; unpack is {up / t * 100:.0f}% of imagetool's total"
                   + (" — at this size both steps are mostly fixed per-process costs (interpreter start, "
                      "imports, registry round trips); imagetool is not profiled here yet, that is the next "
                      "measurement to take" if name == "busybox" else
                      " — the per-entry work of applying ~7400 tar entries, which umoci also pays"))
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
    lines = ["| benchmark | pyrun/runc | pyrun/crun | imagetool/(skopeo+umoci) |", "|---|---:|---:|---:|"]
    for bench in benches:
        cells = []
        for a, b in (("pyrun", "runc"), ("pyrun", "crun"), ("imagetool", "skopeo+umoci")):
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
    out += ["", "## Targets (issue 9)", "", "| target | measured | verdict |", "|---|---|---|"]
    out += [f"| {r['target']} | {r['measured']} | {r['verdict']} |" for r in evaluate(by_name)]
    reasons = why(by_name)
    if reasons:
        out += ["", "**What costs the time** (from the numbers below and the profile):", ""] + reasons
    out += ["", "## Ratios at a glance", ""] + summary_rows(all_benches) + [""]
    if profile_md:
        out += [profile_md, ""]
    elif os.path.exists(os.path.join(HERE, "profiles", "summary.md")):
        with open(os.path.join(HERE, "profiles", "summary.md")) as f:
            out += [f.read().rstrip(), ""]
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
