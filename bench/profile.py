"""Where `pyrun run /bin/true` spends its time, seen four ways, saved under bench/profiles/:

- importtime-run.txt   `python -X importtime`: every import, self and cumulative µs
- cprofile-run.txt     cProfile of the runtime process (the init's side ends in execve)
- strace-run.txt       `strace -f -ttt` of the whole run, and the phases read from it
- floor                interleaved wall times: bare interpreter, interpreter + site, the same
                       plus exactly the modules `run` imports, and the real `pyrun run`
summary.md collects the findings; results.md includes it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from bench.measure import Summary, interleave, run
from bench.runtimes import PYRUN

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILES = os.path.join(HERE, "profiles")
PY = sys.executable
_n = [0]


def _cid() -> str:
    _n[0] += 1
    return f"prof-{_n[0]}"


def _run_argv(root: str, bundle: str) -> list[str]:
    return ["--root", root, "run", "--bundle", bundle, _cid()]


def importtime(root: str, bundle: str) -> tuple[list[tuple[int, int, str]], str]:
    """[(self µs, cumulative µs, module with its indent)] of one `pyrun run`."""
    p = subprocess.run([PY, *shebang_flags(), "-X", "importtime", PYRUN, *_run_argv(root, bundle)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return rows, p.stderr


# pyrun leaves through os._exit (no interpreter teardown), so `python -m cProfile`,
# which writes its file at exit, would write nothing: the profile is dumped from
# os._exit itself, by the runtime process only (the init's children exit too).
_CPROFILE = """
import cProfile, os, sys
out, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
prof, me, real_exit = cProfile.Profile(), os.getpid(), os._exit
def _exit(code):
    if os.getpid() == me:
        prof.disable()
        prof.dump_stats(out)
    real_exit(code)
os._exit = _exit
code = compile(open(script).read(), script, "exec")
prof.enable()
exec(code, {"__name__": "__main__", "__file__": script})
"""


def cprofile(root: str, bundle: str) -> str:
    import pstats
    out = os.path.join(PROFILES, "run.prof")
    subprocess.run([PY, *shebang_flags(), "-c", _CPROFILE, out, PYRUN, *_run_argv(root, bundle)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    import io
    buf = io.StringIO()
    stats = pstats.Stats(out, stream=buf)
    stats.strip_dirs().sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(20)
    return buf.getvalue()


_PHASE_RULES = [
    ("interpreter started", lambda l: " execve(" in l),
    ("first runtime/ module opened", lambda l: "openat(" in l and "/runtime/" in l),
    ("config.json read", lambda l: "openat(" in l and "config.json" in l),
    ("clone3 of the init", lambda l: "clone3(" in l),
    ("pivot_root in the init", lambda l: "pivot_root(" in l),
    ("execve of the container process", lambda l: " execve" in l and "/bin/true" in l),
]


def strace(root: str, bundle: str) -> tuple[list[tuple[str, float]], str] | None:
    if not shutil.which("strace"):
        return None
    out = os.path.join(PROFILES, "strace-run.raw")
    # --seccomp-bpf: only the traced calls stop the tracee, so the rest runs at full speed.
    subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-o", out, "-e",
                    "trace=execve,execveat,clone,clone3,openat,mount,pivot_root,exit_group,wait4",
                    PYRUN, *_run_argv(root, bundle)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    with open(out) as f:
        lines = f.read().splitlines()
    os.unlink(out)
    stamp = lambda l: float(l.split()[1])  # noqa: E731 - "PID SECONDS.USEC call…"
    phases, seen = [], set()
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        for name, rule in _PHASE_RULES:
            if name not in seen and rule(line):
                seen.add(name)
                phases.append((name, stamp(line)))
    if lines:
        phases.append(("last process exited", stamp(lines[-1])))
        mounts = sum(1 for l in lines if " mount(" in l)
        opens = sum(1 for l in lines if "openat(" in l)
        phases.append((f"(counts: {opens} openat, {mounts} mount)", stamp(lines[-1])))
    return phases, "\n".join(lines)


LAUNCHER = "pyrun-launcher"


def shebang() -> list[str]:
    """pyrun's #! line as words: `<pyrun-launcher> <python> <flags>` (or without the launcher)."""
    with open(PYRUN) as f:
        first = f.readline()
    return first[2:].split() if first.startswith("#!") else []


def shebang_flags() -> list[str]:
    """The interpreter flags on pyrun's #! line (e.g. -IS), which every call pays for or saves."""
    words = shebang()
    if words and os.path.basename(words[0]) == LAUNCHER:
        words = words[1:]
    return words[1:]


def unsealed_pyrun(workdir: str) -> str | None:
    """pyrun's own script with the launcher left out of its #! line: `#!<python> <flags>`,
    the interpreter exec'd from its writable mount. In a venv-like tree of its own, since
    the script finds site-packages from where it lies. None when pyrun has no launcher."""
    words = shebang()
    if not words or os.path.basename(words[0]) != LAUNCHER:
        return None
    import sysconfig
    v = sys.version_info
    lib = os.path.join(workdir, "unsealed", "lib", f"python{v[0]}.{v[1]}")
    os.makedirs(lib, exist_ok=True)
    os.makedirs(os.path.join(workdir, "unsealed", "bin"), exist_ok=True)
    if not os.path.lexists(os.path.join(lib, "site-packages")):
        os.symlink(sysconfig.get_paths()["purelib"], os.path.join(lib, "site-packages"))
    script = os.path.join(workdir, "unsealed", "bin", "pyrun")
    with open(PYRUN) as f:
        body = f.read().split("\n", 1)[1]
    with open(script, "w") as f:
        f.write("#!" + " ".join(words[1:]) + "\n" + body)
    os.chmod(script, 0o755)
    return script


def floor(root: str, bundle: str, modules: list[str], n: int, unsealed: str | None = None) -> dict[str, list[float]]:
    """Interleaved: how much of `pyrun run` is the interpreter, site, the imports, the work,
    and (`unsealed`, a pyrun without its launcher) what the read-only exec costs."""
    import runtime
    project = os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))
    flags = shebang_flags()
    import sysconfig
    site = sysconfig.get_paths()["purelib"]  # what pyrun's script appends under -S
    imports = f"import sys; sys.path.insert(0, {project!r}); sys.path.append({site!r}); " + (
        "import " + ", ".join(modules) if modules else "pass")
    shown = " ".join(flags)
    cands = {
        "python -I -S -c pass": [PY, "-I", "-S", "-c", "pass"],
        "python -c pass (with site)": [PY, "-c", "pass"],
        f"python {shown} -c 'import <the {len(modules)} modules run imports>'": [PY, *flags, "-c", imports],
    }
    fns = {k: (lambda i, a=a: run(a).wall) for k, a in cands.items()}
    fns[f"pyrun run /bin/true (#! flags: {shown or 'none'})"] = (
        lambda i: run([PYRUN, *_run_argv(root, bundle)]).wall)
    if unsealed:
        fns[f"pyrun run /bin/true, #! without {LAUNCHER} (not sealed)"] = (
            lambda i: run([unsealed, *_run_argv(root, bundle)]).wall)
    return interleave(fns, n)


def run_all(workdir: str, quick: bool, log, meta: dict | None = None) -> None:
    from tests.support.bundle import make_bundle
    os.makedirs(PROFILES, exist_ok=True)
    os.makedirs(workdir, exist_ok=True)
    bundle = make_bundle(os.path.join(workdir, "bundle"), args=("/bin/true",))
    root = os.path.join(workdir, "root")
    try:
        log("profile: python -X importtime pyrun run …")
        run([PYRUN, *_run_argv(root, bundle)])  # warm the page cache and .pyc files
        # Three runs, each module's minimum: one stray recompiled .pyc or a busy
        # moment must not decide the ranking.
        runs = [importtime(root, bundle) for _ in range(3)]
        raw = runs[-1][1]
        best: dict[str, tuple[int, int, str]] = {}
        for rs, _ in runs:
            for s, c, name in rs:
                old = best.get(name)
                best[name] = (min(s, old[0]), min(c, old[1]), name) if old else (s, c, name)
        rows = [best[name] for _, _, name in runs[-1][0] if name in best]
        with open(os.path.join(PROFILES, "importtime-run.txt"), "w") as f:
            f.write(raw)
        log("profile: cProfile pyrun run …")
        prof = cprofile(root, bundle)
        with open(os.path.join(PROFILES, "cprofile-run.txt"), "w") as f:
            f.write(prof)
        log("profile: strace -f pyrun run …")
        traced = strace(root, bundle)
        if traced:
            with open(os.path.join(PROFILES, "strace-run.txt"), "w") as f:
                f.write("\n".join(f"{t:.6f} {name}" for name, t in traced[0]) + "\n\n" + traced[1] + "\n")
        top_level = [name.strip() for _, _, name in rows if not name.startswith(" ")]
        ours = [m for m in top_level if m.split(".")[0] in ("runtime", "specs")]
        log("profile: interpreter floor vs pyrun run …")
        fl = floor(root, bundle, ours, 6 if quick else 20, unsealed_pyrun(workdir))
    finally:
        subprocess.run([PYRUN, "--root", root, "list", "-q"], capture_output=True)
        for cid in (os.listdir(root) if os.path.isdir(root) else []):
            subprocess.run([PYRUN, "--root", root, "delete", "--force", cid], capture_output=True)
    from bench import report
    from bench.measure import Bench
    report.save_section("profile", [Bench("floor", "pyrun run /bin/true against the interpreter floor",
                                          "s", fl)], meta or {"when": report.now()})
    with open(os.path.join(PROFILES, "summary.md"), "w") as f:
        f.write(summary_md(rows, prof, traced[0] if traced else None,
                           {k: Summary.of(v) for k, v in fl.items()}))


def summary_md(rows, prof: str, phases, fl: dict[str, Summary]) -> str:
    total_self = sum(s for s, _, _ in rows)
    out = ["## Profile of `pyrun run /bin/true` (the slowest path against its peers)", "",
           "Files: bench/profiles/importtime-run.txt, cprofile-run.txt, strace-run.txt.", "",
           "**Where the wall time goes** (interleaved, median): the bare interpreter, with site, "
           "the interpreter with pyrun's own #! flags importing exactly the modules `run` imports, "
           "and the real `pyrun run`; the last two rows' difference is the work itself:", "",
           "| command | median | min | max |", "|---|---:|---:|---:|"]
    for name, s in fl.items():
        out.append(f"| `{name}` | {s.median * 1000:.1f} ms | {s.min * 1000:.1f} ms | {s.max * 1000:.1f} ms |")
    out += ["", f"**Imports** (`-X importtime`, per module the minimum of three runs): {len(rows)} modules, {total_self / 1000:.1f} ms "
            "in total (self times summed). Largest top-level imports by cumulative time:", "",
            "| module | cumulative | self |", "|---|---:|---:|"]
    top = sorted((r for r in rows if not r[2].startswith(" ")), key=lambda r: -r[1])[:12]
    out += [f"| {name} | {cum / 1000:.2f} ms | {s / 1000:.2f} ms |" for s, cum, name in top]
    out += ["", "Largest self times:", "", "| module | self |", "|---|---:|"]
    out += [f"| {name.strip()} | {s / 1000:.2f} ms |" for s, _, name in sorted(rows, key=lambda r: -r[0])[:10]]
    if phases:
        t0 = phases[0][1]
        out += ["", "**Phases** from `strace -f -ttt` (strace slows every traced syscall, so read the "
                "shares, not the absolute times):", "", "| event | at |", "|---|---:|"]
        out += [f"| {name} | +{(t - t0) * 1000:.1f} ms |" for name, t in phases]
    cumulative, _, internal = prof.partition("Ordered by: internal time")
    biggest = []
    for line in [l for l in internal.splitlines() if re.match(r"\s+\d", l)][:3]:
        f = line.split(None, 5)
        biggest.append(f"{f[5]} ×{f[0]}: {float(f[1]) * 1000:.0f} ms")
    if biggest:
        out += ["", "Largest in-process costs of the runtime process (cProfile internal time): "
                + "; ".join(biggest) + "."]
    rows_of = lambda text, k: [l for l in text.splitlines() if re.match(r"\s+\d", l)][:k]  # noqa: E731
    out += ["", "**cProfile** of the runtime process (ncalls tottime percall cumtime percall function); "
            "`recv` is the parent waiting for the init's set-up, `waitpid` for the container's exit. "
            "Top of the cumulative list:", "", "```"] + rows_of(cumulative, 15) + ["```", "",
            "Top of the internal-time list:", "", "```"] + rows_of(internal, 10) + ["```", ""]
    return "\n".join(out)
