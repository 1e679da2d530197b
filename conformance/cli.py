"""`python -m conformance --runtime PATH [--report FILE.json] [-k PATTERN] ...`"""
import argparse
import os
import subprocess
import sys
import time

from conformance import host, report, runner, suite

PRIVATE_NS_ENV = "CF_PRIVATE_MOUNT_NS"


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m conformance",
                                 description="OCI runtime-spec conformance, for any runtime with runc's CLI.")
    ap.add_argument("--runtime", help="the runtime binary (a path, or a name on PATH)")
    ap.add_argument("--report", metavar="FILE.json", help="also write the results as JSON")
    ap.add_argument("-k", dest="patterns", action="append", default=[], metavar="PATTERN",
                    help="only cases whose name or section contains PATTERN (or matches it as a glob); repeatable")
    ap.add_argument("-j", "--jobs", type=int, default=max(2 * (os.cpu_count() or 1), 2),
                    help="cases run at once (default: twice the CPUs)")
    ap.add_argument("--workdir", default=None, help="where bundles and the --root go (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory, for a post-mortem")
    ap.add_argument("--hide-mount", action="append", default=[], metavar="PATH",
                    help="run in a private mount namespace without the mount at PATH "
                         "(e.g. a cgroup2 mount a runtime mistakes for the host's hierarchy); "
                         "the host's mounts are not touched")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each result as it comes")
    args = ap.parse_args(argv)
    if not args.list and not args.runtime:
        ap.error("--runtime is required")
    return args


def reexec_hidden(argv, paths) -> None:
    """Run this same command again inside `unshare -m` (all mounts private there), with each of
    paths unmounted in that namespace only."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--hide-mount":
            skip = True
        elif not a.startswith("--hide-mount="):
            rest.append(a)
    script = 'for p in "$@"; do [ "$p" = -- ] && break; umount -l "$p" || exit 1; shift; done; shift; exec "$@"'
    env = dict(os.environ, **{PRIVATE_NS_ENV: " ".join(paths)})
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_parent + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *paths, "--",
           sys.executable, "-m", "conformance", *rest]
    sys.stdout.flush()
    sys.exit(subprocess.call(cmd, env=env))


def version(runtime: str) -> str:
    out = host.capture([runtime, "--version"])
    return out.splitlines()[0].strip() if out.strip() else "?"


def print_result(r) -> None:
    print(f"{r.outcome:4}  {r.name}" + (f": {r.reason}" if r.reason else ""), flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    cases = runner.select(args.patterns)
    if args.list:
        for c in cases:
            print(f"{c.name}  {c.section}")
        return 0
    if args.hide_mount and not os.environ.get(PRIVATE_NS_ENV):
        reexec_hidden(argv, args.hide_mount)
    if os.getuid() != 0:
        print("conformance: needs root (real namespaces, mounts and cgroups)", file=sys.stderr)
        return 2
    if not cases:
        print(f"conformance: no case matches {args.patterns}", file=sys.stderr)
        return 2
    from conformance.harness import Run
    host.become_subreaper()
    run = Run(args.runtime, workdir=args.workdir, keep=args.keep)
    progress = print_result if args.verbose else None
    t0 = time.monotonic()
    try:
        results = runner.run_all(run, cases, max(args.jobs, 1), progress)
    finally:
        problems = run.close()
    seconds = time.monotonic() - t0
    print(report.table(results))
    print()
    ver = version(run.runtime)
    print(f"{run.runtime} ({ver}): {report.summary_line(results, seconds)}")
    for p in problems:
        print(f"conformance: {p}", file=sys.stderr)
    if args.report:
        env = {"kernel": os.uname().release, "cgroups": host.cgroup_mode(),
               "hidden_mounts": os.environ.get(PRIVATE_NS_ENV, "")}
        report.write_json(args.report, run.runtime, ver, results, seconds, env)
    failed = any(r.outcome == suite.FAIL for r in results)
    return 1 if failed or problems else 0
