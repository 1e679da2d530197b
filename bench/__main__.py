"""python -m bench [--quick] [runtime] [images] [profile]  (no section: all of them)

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

SECTIONS = ("runtime", "images", "profile")


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
    return {"when": now(), "mode": mode, "host": f"Linux {u.release}, {os.cpu_count()} CPUs",
            "versions": versions(), "notes": notes}


def run_runtime(work: str, quick: bool) -> None:
    from bench import report, runtime, runtimes
    rts, missing = runtimes.available(os.path.join(work, "runtime"))
    if "pyrun" in missing:
        raise SystemExit(f"bench: {missing['pyrun']}")
    notes = [f"{name}: {why}" for name, why in missing.items()]
    if runtimes.hybrid_host():
        notes.append("crun runs as `unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec crun …'` "
                     "(crun 1.8 fails on this hybrid cgroup host otherwise); the wrapper alone "
                     "(exec'ing /bin/true) is measured in the same rounds as `crun-wrapper` and its "
                     "median subtracted from crun's numbers")
    os.makedirs(os.path.join(work, "runtime"))
    try:
        benches, failures = runtime.run_all(rts, os.path.join(work, "runtime"), quick, log)
        notes += failures
    finally:
        for rt in rts:
            rt.force_delete_all()
        if not runtimes.host_cgroup2_still_mounted():
            log("WARNING: /sys/fs/cgroup/unified is no longer mounted in this namespace")
    report.save_section("runtime", benches, meta("quick" if quick else "full", notes))


def run_images(work: str, quick: bool) -> None:
    from bench import images, report
    benches, notes = images.run_all(os.path.join(work, "images"), quick, log)
    report.save_section("images", benches, meta("quick" if quick else "full", notes))


def run_profile(work: str, quick: bool) -> None:
    from bench import profile
    profile.run_all(os.path.join(work, "profile"), quick, log, meta("quick" if quick else "full", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", metavar="SECTION",
                        help="runtime, images, profile (default: all)")
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
                {"runtime": run_runtime, "images": run_images, "profile": run_profile}[section](work, args.quick)
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
