"""Where pyrun's commands spend their time, seen five ways, saved under bench/profiles/:

- importtime-run.txt, importtime-state.txt   `python -X importtime`: every import, self
                       and cumulative µs
- cprofile-CMD.txt     cProfile of the runtime process of run, create, start, state, kill,
                       delete and list (the init's side of run ends in execve)
- strace-run.txt       `strace -f -ttt` of the whole run, and the phases read from it
- syscalls-CMD.txt     `strace -f -c` (system time) and `strace -f -c -w` (wall, blocking
                       included) per syscall, of run and of state
- floor                interleaved wall times: bare interpreter, interpreter + site, the same
                       plus exactly the modules `run` imports, the real `pyrun run`, and
                       run and state with and without pyrun-launcher's read-only exec
summary.md collects the findings; results.md includes it.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import statistics
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


def importtime(args: list[str]) -> tuple[list[tuple[int, int, str]], str]:
    """[(self µs, cumulative µs, module with its indent)] of one `pyrun ARGS`."""
    p = subprocess.run([PY, *shebang_flags(), "-X", "importtime", PYRUN, *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)$", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return rows, p.stderr


# pyrun leaves through os._exit (no interpreter teardown), so `python -m cProfile`,
# which writes its file at exit, would write nothing: the profile is dumped from
# os._exit itself, by the runtime process only (the init's children exit too), or
# when the script returns or raises SystemExit.
#
# The container init (a clone3 child, still under the profiler) is profiled too when
# INIT_OUT is not "-": its inherited statistics are cleared as init.run begins, and
# dumped just before process.finish (which closes every fd the runtime holds) to a
# file opened here, close-on-exec, before clone3: after pivot_root no host path is
# reachable, and close_fds_except is told to keep that one fd. Profiling only.
_CPROFILE = """
import cProfile, marshal, os, sys
out, init_out, paths, script = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sys.argv = sys.argv[4:]
prof, me, real_exit, done = cProfile.Profile(), os.getpid(), os._exit, []
init_fd = -1
def _dump():
    if done:
        return
    done.append(1)
    prof.disable()
    if os.getpid() == me:
        prof.dump_stats(out)
    elif init_fd >= 0:
        prof.create_stats()
        os.write(init_fd, marshal.dumps(prof.stats))
def _exit(code):
    _dump()
    real_exit(code)
os._exit = _exit
if init_out != "-":
    sys.path.extend(paths.split(":"))
    from runtime import init, process
    init_fd = os.open(init_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    real_run, real_close, real_finish = init.run, process.close_fds_except, process.finish
    def run(ctx):
        prof.disable()
        prof.clear()
        prof.enable()
        real_run(ctx)
    def close_fds_except(preserve, keep):
        real_close(preserve, tuple(keep) + (init_fd,))
    def finish(*a, **kw):
        _dump()
        real_finish(*a, **kw)
    init.run, process.close_fds_except, process.finish = run, close_fds_except, finish
code = compile(open(script).read(), script, "exec")
prof.enable()
try:
    exec(code, {"__name__": "__main__", "__file__": script})
finally:
    _dump()
"""


def cprofile(args: list[str], name: str, init_name: str | None = None) -> tuple[str, str | None]:
    """cProfile of `pyrun ARGS` (the runtime process), as text in µs (pstats' own lists
    print milliseconds, all zeros for a 3 ms command): the cumulative and the
    internal-time lists; with init_name, the same of the container init it spawns."""
    import runtime
    import sysconfig
    out = os.path.join(PROFILES, f"{name}.prof")
    init_out = os.path.join(PROFILES, f"{init_name}.prof") if init_name else "-"
    paths = ":".join((sysconfig.get_paths()["purelib"],
                      os.path.dirname(os.path.dirname(os.path.abspath(runtime.__file__)))))
    subprocess.run([PY, *shebang_flags(), "-c", _CPROFILE, out, init_out, paths, PYRUN, *args],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    text = _stats_text(out, f"pyrun {' '.join(args[2:])}")
    if not init_name:
        return text, None
    if not os.path.getsize(init_out):
        return text, "the init wrote no profile\n"
    return text, _stats_text(init_out, f"the container init of pyrun {' '.join(args[2:])}, from init.run to "
                                       "process.finish")


def _stats_text(path: str, what: str) -> str:
    import pstats
    stats = pstats.Stats(path)
    rows = [(nc, pc, tt, ct, _where(key)) for key, (pc, nc, tt, ct, _) in stats.stats.items()]
    head = f"{'ncalls':>9} {'tottime':>10} {'cumtime':>10}  function"
    line = lambda r: f"{r[0] if r[0] == r[1] else f'{r[0]}/{r[1]}':>9} {r[2] * 1e6:>7.0f} µs {r[3] * 1e6:>7.0f} µs  {r[4]}"  # noqa: E731
    return "\n".join([f"{what}: {stats.total_calls} function calls in {stats.total_tt * 1000:.1f} ms", "",
                      "Ordered by: cumulative time", head]
                     + [line(r) for r in sorted(rows, key=lambda r: -r[3])[:40]]
                     + ["", "Ordered by: internal time", head]
                     + [line(r) for r in sorted(rows, key=lambda r: -r[2])[:30]]) + "\n"


def _where(key: tuple[str, int, str]) -> str:
    filename, lineno, func = key
    if filename == "~":
        return func
    return f"{os.path.basename(filename)}:{lineno}({func})"


def syscall_summary(args: list[str]) -> tuple[str, list[tuple[str, float, int]], list[tuple[str, float, int]]] | None:
    """`strace -f -c` (system time per syscall) and `strace -f -c -w` (wall time per
    syscall, blocking included) of `pyrun ARGS`: the raw tables and, for each,
    [(syscall, seconds, calls)] largest first. Each runs its own container, so the
    caller passes a fresh ARGS list builder."""
    if not shutil.which("strace"):
        return None
    tables, parsed = [], []
    for flags in (["-c"], ["-c", "-w"]):
        out = os.path.join(PROFILES, "syscalls.raw")
        subprocess.run(["strace", "-f", *flags, "-o", out, PYRUN, *args()],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60)
        with open(out) as f:
            text = f.read()
        os.unlink(out)
        tables.append(f"$ strace -f {' '.join(flags)} pyrun …\n{text}")
        parsed.append(_strace_table(text))
    return "\n".join(tables), parsed[0], parsed[1]


def _strace_table(text: str) -> list[tuple[str, float, int]]:
    rows = []
    for line in text.splitlines():
        f = line.split()
        # "% time seconds usecs/call calls [errors] syscall"
        if len(f) >= 5 and re.match(r"^\d+\.\d+$", f[0]) and f[-1] != "total":
            rows.append((f[-1], float(f[1]), int(f[3])))
    return sorted(rows, key=lambda r: -r[1])


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


def pyrun_copies(workdir: str) -> tuple[str, str] | None:
    """Two copies of pyrun's own script side by side in a venv-like tree of their own (the
    script finds site-packages from where it lies): one with the #! line as installed
    (`<pyrun-launcher> <python> <flags>`: sealed), one with the launcher left out
    (`<python> <flags>`: the interpreter exec'd from its writable mount). They differ in
    nothing but the launcher. None when pyrun has no launcher."""
    words = shebang()
    if not words or os.path.basename(words[0]) != LAUNCHER:
        return None
    import sysconfig
    v = sys.version_info
    tree = os.path.join(workdir, "copies")
    lib = os.path.join(tree, "lib", f"python{v[0]}.{v[1]}")
    os.makedirs(lib, exist_ok=True)
    os.makedirs(os.path.join(tree, "bin"), exist_ok=True)
    if not os.path.lexists(os.path.join(lib, "site-packages")):
        os.symlink(sysconfig.get_paths()["purelib"], os.path.join(lib, "site-packages"))
    with open(PYRUN) as f:
        body = f.read().split("\n", 1)[1]
    out = []
    for name, line in (("pyrun-sealed", words), ("pyrun-unsealed", words[1:])):
        script = os.path.join(tree, "bin", name)
        with open(script, "w") as f:
            f.write("#!" + " ".join(line) + "\n" + body)
        os.chmod(script, 0o755)
        out.append(script)
    return out[0], out[1]


def floor(root: str, bundle: str, modules: list[str], n: int) -> dict[str, list[float]]:
    """Interleaved: how much of `pyrun run` is the interpreter, site, the imports, the work."""
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
    return interleave(fns, n)


# The launcher benchmark's candidates: (command, variant) → name.
SEALED, UNSEALED, INSTALLED = "copy with pyrun-launcher (sealed)", "copy without it (not sealed)", "as installed"


def launcher(root: str, bundle: str, state_id: str, copies: tuple[str, str], n: int) -> dict[str, list[float]]:
    """What pyrun-launcher's read-only exec costs: `run` and `state` by the installed pyrun
    and by the two copies of pyrun_copies, interleaved."""
    sealed, unsealed = copies
    fns = {}
    for variant, script in ((INSTALLED, PYRUN), (SEALED, sealed), (UNSEALED, unsealed)):
        fns[f"run, {variant}"] = lambda i, s=script: run([s, *_run_argv(root, bundle)]).wall
        fns[f"state, {variant}"] = lambda i, s=script: run([s, "--root", root, "state", state_id]).wall
    return interleave(fns, n)


# The commands cProfile'd, in the order a container goes through them.
HOT = ("run", "create", "start", "state", "kill", "delete", "list")


def _best_imports(args: list[str]) -> list[tuple[int, int, str]]:
    """Three runs, each module's minimum: one stray recompiled .pyc or a busy moment
    must not decide the ranking."""
    runs = [importtime(args() if callable(args) else args) for _ in range(3)]
    best: dict[str, tuple[int, int, str]] = {}
    for rs, _ in runs:
        for s, c, name in rs:
            old = best.get(name)
            best[name] = (min(s, old[0]), min(c, old[1]), name) if old else (s, c, name)
    return [best[name] for _, _, name in runs[-1][0] if name in best], runs[-1][1]


def run_all(workdir: str, quick: bool, log, meta: dict | None = None) -> None:
    from tests.support.bundle import make_bundle
    os.makedirs(PROFILES, exist_ok=True)
    os.makedirs(workdir, exist_ok=True)
    bundle = make_bundle(os.path.join(workdir, "bundle"), args=("/bin/true",))
    sleeper = make_bundle(os.path.join(workdir, "bundle-sleep"), args=("sleep", "3600"))
    root = os.path.join(workdir, "root")
    pyrun = lambda *a: run([PYRUN, "--root", root, *a])  # noqa: E731
    profiles: dict[str, str] = {}
    try:
        log("profile: python -X importtime pyrun run, state …")
        pyrun("run", "--bundle", bundle, _cid())  # warm the page cache and .pyc files
        rows, raw = _best_imports(lambda: _run_argv(root, bundle))
        with open(os.path.join(PROFILES, "importtime-run.txt"), "w") as f:
            f.write(raw)
        # Containers present while the commands are profiled, as in the runtime section.
        present = 20 if quick else 100
        for _ in range(present):
            pyrun("create", "--bundle", bundle, _cid())
        state_id = _cid()
        pyrun("create", "--bundle", sleeper, state_id)
        state_rows, raw = _best_imports(["--root", root, "state", state_id])
        with open(os.path.join(PROFILES, "importtime-state.txt"), "w") as f:
            f.write(raw)
        log("profile: cProfile of " + ", ".join(HOT) + " …")
        cid = _cid()
        profiles["run"], profiles["init"] = cprofile(_run_argv(root, bundle), "cprofile-run", "cprofile-init")
        for cmd, args in (("create", ["--root", root, "create", "--bundle", sleeper, cid]),
                          ("start", ["--root", root, "start", cid]),
                          ("state", ["--root", root, "state", cid]),
                          ("kill", ["--root", root, "kill", cid, "9"])):
            profiles[cmd] = cprofile(args, f"cprofile-{cmd}")[0]
        _wait_stopped(root, cid)
        profiles["delete"] = cprofile(["--root", root, "delete", cid], "cprofile-delete")[0]
        profiles["list"] = cprofile(["--root", root, "list"], "cprofile-list")[0]
        for cmd, text in profiles.items():
            with open(os.path.join(PROFILES, f"cprofile-{cmd}.txt"), "w") as f:
                f.write(text)
        log("profile: strace -f pyrun run; strace -c of run and state …")
        traced = strace(root, bundle)
        if traced:
            with open(os.path.join(PROFILES, "strace-run.txt"), "w") as f:
                f.write("\n".join(f"{t:.6f} {name}" for name, t in traced[0]) + "\n\n" + traced[1] + "\n")
        syscalls = {}
        for cmd, args in (("run", lambda: _run_argv(root, bundle)),
                          ("state", lambda: ["--root", root, "state", state_id])):
            got = syscall_summary(args)
            if got:
                syscalls[cmd] = got[1:]
                with open(os.path.join(PROFILES, f"syscalls-{cmd}.txt"), "w") as f:
                    f.write(got[0])
        top_level = [name.strip() for _, _, name in rows if not name.startswith(" ")]
        ours = [m for m in top_level if m.split(".")[0] in ("runtime", "specs")]
        log("profile: interpreter floor vs pyrun run …")
        fl = floor(root, bundle, ours, 6 if quick else 40)
        copies = pyrun_copies(workdir)
        if copies:
            log("profile: run and state with and without pyrun-launcher …")
            sealing = launcher(root, bundle, state_id, copies, 8 if quick else 100)
    finally:
        for cid in (os.listdir(root) if os.path.isdir(root) else []):
            subprocess.run([PYRUN, "--root", root, "delete", "--force", cid], capture_output=True)
    from bench import report
    from bench.measure import Bench
    benches = [Bench("floor", "pyrun run /bin/true against the interpreter floor", "s", fl)]
    if copies:
        benches.append(Bench("launcher", "pyrun-launcher's read-only exec: run and state with and without it",
                             "s", sealing, [(f"{c}, {SEALED}", f"{c}, {UNSEALED}") for c in ("run", "state")]))
    report.save_section("profile", benches, meta or {"when": report.now()})
    with open(os.path.join(PROFILES, "summary.md"), "w") as f:
        f.write(summary_md(rows, state_rows, profiles, traced[0] if traced else None, syscalls,
                           {k: Summary.of(v) for k, v in fl.items()}, sealing if copies else {}))


def _wait_stopped(root: str, cid: str, tries: int = 2000) -> None:
    import time
    for _ in range(tries):
        p = subprocess.run([PYRUN, "--root", root, "state", cid], capture_output=True, text=True)
        if '"stopped"' in p.stdout:
            return
        time.sleep(0.005)


def _imports_table(rows, k: int = 12) -> list[str]:
    out = ["| module | cumulative | self |", "|---|---:|---:|"]
    top = sorted((r for r in rows if not r[2].startswith(" ")), key=lambda r: -r[1])[:k]
    return out + [f"| {name} | {cum / 1000:.2f} ms | {s / 1000:.2f} ms |" for s, cum, name in top]


def _self_table(rows, k: int = 12) -> list[str]:
    out = ["| module | self |", "|---|---:|"]
    return out + [f"| {name.strip()} | {s / 1000:.2f} ms |" for s, _, name in sorted(rows, key=lambda r: -r[0])[:k]]


def _ours(rows) -> list[tuple[int, int, str]]:
    return [r for r in rows if r[2].strip().split(".")[0] in ("runtime", "specs")]


def _prof_rows(text: str, k: int) -> tuple[list[str], list[str]]:
    cumulative, _, internal = text.partition("Ordered by: internal time")
    rows_of = lambda t: [l for l in t.splitlines() if re.match(r"\s+\d", l)][:k]  # noqa: E731
    return rows_of(cumulative), rows_of(internal)


def _prof_total(text: str) -> str:
    m = re.search(r"(\d+) function calls in ([\d.]+) ms", text)
    return f"{m.group(1)} calls, {m.group(2)} ms" if m else "?"


def summary_md(rows, state_rows, profiles: dict[str, str], phases, syscalls: dict,
               fl: dict[str, Summary], sealing: dict[str, list[float]]) -> str:
    total_self = sum(s for s, _, _ in rows)
    out = ["## Profile: where pyrun's time goes", "",
           "Files: bench/profiles/ (importtime-run.txt, importtime-state.txt, cprofile-*.txt, strace-run.txt, "
           "syscalls-*.txt).", "",
           "**Floor** (interleaved, median): the bare interpreter, with site, the interpreter with pyrun's "
           "own #! flags importing exactly the modules `run` imports, and the real `pyrun run`; the last two "
           "rows' difference is the work itself:", "",
           "| command | median | min | max |", "|---|---:|---:|---:|"]
    for name, s in fl.items():
        out.append(f"| `{name}` | {s.median * 1000:.1f} ms | {s.min * 1000:.1f} ms | {s.max * 1000:.1f} ms |")
    if sealing:
        out += ["", "**pyrun-launcher** (the interpreter exec'd from a detached read-only mount, CVE-2019-5736): "
                "`run` and `state` by the installed pyrun and by two copies of its script that differ only in "
                "the launcher on their #! line, interleaved:", "",
                "| command | median | min | max |", "|---|---:|---:|---:|"]
        for name, v in sealing.items():
            s = Summary.of(v)
            out.append(f"| {name} | {s.median * 1000:.1f} ms | {s.min * 1000:.1f} ms | {s.max * 1000:.1f} ms |")
        diffs = []
        for c in ("run", "state"):
            d = statistics.median(a - b for a, b in zip(sealing[f"{c}, {SEALED}"], sealing[f"{c}, {UNSEALED}"]))
            diffs.append(f"{c} {'+' if d >= 0 else '−'}{abs(d) * 1000:.2f} ms")
        out += ["", "Sealed − not sealed, median of the per-round differences: " + ", ".join(diffs) + "."]
    ours = _ours(rows)
    out += ["", f"**Imports of `run`** (`-X importtime`, per module the minimum of three runs): {len(rows)} "
            f"modules, {total_self / 1000:.1f} ms of self time in all; pyrun's own ({len(ours)} modules of "
            f"runtime/ and specs/): {sum(r[0] for r in ours) / 1000:.1f} ms. Largest top-level imports "
            "by cumulative time:", ""] + _imports_table(rows)
    out += ["", "Largest self times:", ""] + _self_table(rows, 15)
    st_ours = _ours(state_rows)
    out += ["", f"**Imports of `state`**: {len(state_rows)} modules, "
            f"{sum(s for s, _, _ in state_rows) / 1000:.1f} ms of self time; pyrun's own: {len(st_ours)} "
            f"modules, {sum(r[0] for r in st_ours) / 1000:.1f} ms ("
            + ", ".join(f"{n.strip()} {s / 1000:.2f}" for s, _, n in sorted(st_ours, key=lambda r: -r[0])[:8])
            + " ms)."]
    if phases:
        t0 = phases[0][1]
        out += ["", "**Phases of `run`** from `strace -f -ttt` (strace slows every traced syscall, so read the "
                "shares, not the absolute times):", "", "| event | at |", "|---|---:|"]
        out += [f"| {name} | +{(t - t0) * 1000:.1f} ms |" for name, t in phases]
    for cmd, (cpu_rows, wall_rows) in syscalls.items():
        out += ["", f"**Syscalls of `{cmd}`** (`strace -f -c`: system time; `-c -w`: wall time, blocking "
                "included; every process of the command; strace's own overhead inflates both):", "",
                "| syscall | system time | calls | | syscall | wall time | calls |", "|---|---:|---:|---|---|---:|---:|"]
        for a, b in itertools.zip_longest(cpu_rows[:12], wall_rows[:12]):
            left = f"{a[0]} | {a[1] * 1000:.2f} ms | {a[2]}" if a else " | | "
            right = f"{b[0]} | {b[1] * 1000:.2f} ms | {b[2]}" if b else " | | "
            out.append(f"| {left} | | {right} |")
        out.append(f"| **all** | {sum(r[1] for r in cpu_rows) * 1000:.2f} ms | {sum(r[2] for r in cpu_rows)} "
                   f"| | **all** | {sum(r[1] for r in wall_rows) * 1000:.2f} ms | {sum(r[2] for r in wall_rows)} |")
    out += ["", "**cProfile** of the runtime process, per command (total: calls, in-process time under the "
            "profiler). In `run`, `recv` is the parent waiting for the init's set-up and `waitpid` for the "
            "container's exit.", ""]
    for cmd, text in profiles.items():
        cum, internal = _prof_rows(text, 12)
        out += [f"`{cmd}` ({_prof_total(text)}), internal time:", "", "```"] + internal + ["```", ""]
        if cmd == "run":
            out += ["`run`, cumulative:", "", "```"] + cum + ["```", ""]
    return "\n".join(out)
