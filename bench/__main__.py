"""python -m bench [--quick] [runtime] [callers] [images] [profile]  (no section: all of them)

Runs the benchmarks as root in a private temp dir, writes bench/results/<section>.json
and bench/results.md, prints the targets and ratios. Everything it starts (containers,
registries, temp dirs) is removed at the end, also on failure or SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# images last: it ends by deleting ~10^5 files, and on this host's ext4 (no journal) every
# file created in the minutes after that pays for them (bench/images.py _discard)
SECTIONS = ("runtime", "callers", "profile", "images")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def versions() -> str:
    out = [f"python {sys.version.split()[0]}"]
    for tool, args in (("runc", ["--version"]), ("crun", ["--version"]), ("skopeo", ["--version"]),
                       ("umoci", ["--version"])):
        try:
            p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=10)
            out.append(p.stdout.splitlines()[0].strip() if p.stdout else f"{tool} ?")
        except (OSError, subprocess.TimeoutExpired):
            out.append(f"{tool}: not installed")
    return "; ".join(out)


def meta(mode: str, notes: list[str]) -> dict:
    u = os.uname()
    from bench.report import now
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return {"when": now(), "mode": mode,
            "host": f"Linux {u.release}, {os.cpu_count()} CPUs, load average {load} at the end",
            "versions": versions(), "notes": notes}


def _in_private_namespace(benches: list, notes: list[str], logged: str, noted: str, *run) -> None:
    """samens.run(*run): its benches and failures join the section's. A namespace that could
    not be made is a FAILED note (`noted`) and a log line (`logged`), not the section's end."""
    from bench import runtimes, samens
    try:
        found, failures = samens.run(*run)
        benches += found
        notes += failures
    except samens.NamespaceError as e:
        log(f"{logged} FAILED: {e}")
        notes.append(f"FAILED {noted}: {str(e).splitlines()[0]}")
    if not runtimes.host_cgroup2_still_mounted():
        log("WARNING: /sys/fs/cgroup/unified is no longer mounted in this namespace")


def run_runtime(work: str, quick: bool) -> None:
    from bench import report, runtime, runtimes
    host = os.path.join(work, "runtime")
    rts, missing = runtimes.available(host)
    if "pyrun" in missing:
        raise SystemExit(f"bench: {missing['pyrun']}")
    notes = [f"{name}: {why}" for name, why in missing.items()]
    if runtimes.hybrid_host():
        notes.append("the `-ns` benchmarks run pyrun, crun and runc in one private mount namespace in which "
                     "the host's cgroup2 mount (/sys/fs/cgroup/unified) is unmounted (bench/samens.py): all "
                     "three see the same v1 cgroups and no wrapper is timed. crun 1.8 refuses this hybrid "
                     "host otherwise")
        notes.append(f"`run` on the host also keeps the old method for crun ({runtime.OLD_CRUN}): each call "
                     "through `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun …'`, the wrapper "
                     "alone measured in the same rounds and its median subtracted")
    os.makedirs(host)
    benches: list = []
    try:
        found, failures = runtime.run_all(rts, host, quick, log)
        benches += found
        notes += failures
    finally:
        for rt in rts:
            rt.force_delete_all()
    _in_private_namespace(benches, notes, "runtime: the private-namespace pairing", "the private-namespace pairing",
                          _runtime_in_namespace, os.path.join(work, "runtime-ns"), quick)
    report.save_section("runtime", benches, meta("quick" if quick else "full", notes))


def _runtime_in_namespace(work: str, quick: bool):
    from bench import runtime, runtimes
    os.makedirs(work)
    rts, _ = runtimes.available(work, wrapped_crun=False)
    try:
        return runtime.run_samens(rts, work, quick, log)
    finally:
        for rt in rts:
            rt.force_delete_all()


def run_callers(work: str, quick: bool) -> None:
    from bench import callers, report
    why = callers.missing()
    if why:
        raise RuntimeError(f"callers: {why}")
    benches, notes = callers.run_all(os.path.join(work, "callers"), quick, log)
    _in_private_namespace(benches, notes, "callers: the private-namespace run", "callers in the private namespace",
                          callers.run_all, os.path.join(work, "callers-ns"), quick, log,
                          ", the caller started in a mount namespace without the cgroup2 mount")
    report.save_section("callers", benches, meta("quick" if quick else "full", notes))


def run_images(work: str, quick: bool) -> None:
    from bench import images, report
    unpack_profile: list[str] | None = None if quick else []
    benches, notes = images.run_all(os.path.join(work, "images"), quick, log, profile=unpack_profile)
    info = meta("quick" if quick else "full", notes)
    if unpack_profile:
        info["unpack_profile"] = unpack_profile
    report.save_section("images", benches, info)


def run_profile(work: str, quick: bool) -> None:
    from bench import profile
    profile.run_all(os.path.join(work, "profile"), quick, log, meta("quick" if quick else "full", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help="runtime, callers, images, profile (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args(argv)
    for s in args.sections:
        if s not in SECTIONS:
            parser.error(f"unknown section {s!r} (choose from {', '.join(SECTIONS)})")
    sections = args.sections or list(SECTIONS)
    if os.getuid() != 0:
        print("bench: runs containers; run it as root", file=sys.stderr)
        return 1
    from bench.measure import become_subreaper, reap_zombies
    become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = tempfile.mkdtemp(prefix="pyrun-bench-")
    os.chmod(work, 0o755)
    t0 = time.monotonic()
    failed = []
    try:
        for section in sections:
            log(f"section {section} ({'quick' if args.quick else 'full'})")
            try:
                {"runtime": run_runtime, "callers": run_callers, "images": run_images,
                 "profile": run_profile}[section](work, args.quick)
            except Exception as e:  # noqa: BLE001 - one failed section must not lose the others
                log(f"section {section} FAILED: {type(e).__name__}: {e}")
                failed.append(section)
    finally:
        reap_zombies()
        shutil.rmtree(work, ignore_errors=True)
    from bench import report
    text = report.write()
    print(_summary(text))
    log(f"done in {time.monotonic() - t0:.0f} s; wrote {report.RESULTS_MD}")
    return 1 if failed else 0


def _summary(text: str) -> str:
    """The targets and the ratio table of results.md, for the terminal."""
    out, keep = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = line.startswith(("## Targets", "## Ratios"))
        if keep:
            out.append(line)
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
