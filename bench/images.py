"""Image benchmarks: imagetool against skopeo copy + umoci unpack, from a local registry
(Debian's docker-registry on 127.0.0.1), on busybox and on the realistic Debian image."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import debian
from bench.measure import Bench, BenchError, interleave, run

IMAGETOOL = os.path.join(os.path.dirname(sys.executable), "imagetool")
OURS, PEERS = "imagetool", "skopeo+umoci"


def _imagetool_pull(ref: str, layout: str, rss: bool = False):
    return run([IMAGETOOL, "pull", "-q", ref, layout], rss=rss, timeout=600)


def _imagetool_unpack(layout: str, bundle: str, rss: bool = False):
    return run([IMAGETOOL, "unpack", f"{layout}:latest", bundle], rss=rss, timeout=600)


def _skopeo_copy(ref: str, layout: str, rss: bool = False):
    return run(["skopeo", "copy", "--quiet", "--insecure-policy", "--src-tls-verify=false",
                f"docker://{ref}", f"oci:{layout}:latest"], rss=rss, timeout=600)


def _umoci_unpack(layout: str, bundle: str, rss: bool = False):
    return run(["umoci", "--log", "error", "unpack", "--image", f"{layout}:latest", bundle],
               rss=rss, timeout=600)


STEPS = {OURS: (_imagetool_pull, _imagetool_unpack), PEERS: (_skopeo_copy, _umoci_unpack)}


_KEPT: list[str] = []


def _fresh(workdir: str) -> str:
    return tempfile.mkdtemp(prefix="round-", dir=workdir)


def _discard(d: str) -> None:
    """Removed when the whole section is done (run_all), not between its steps: on an ext4
    without a journal, as this host's root is, the inode allocator skips every inode freed
    in the last minutes (ext4's recently_deleted()), so each file created after a large
    deletion pays a scan. Measured: unpacks of the Debian layout right after deleting 24
    bundles took 1.44 s (umoci 3.45 s) and came back over four minutes to 0.46 s (1.63 s):
    the same cost a file for both tools, so the ratio moved 0.42× -> 0.28× with nothing
    changed in either. Kept, but out of memory (_evict)."""
    _evict(d)
    _KEPT.append(d)


def _evict(d: str) -> None:
    """Untimed: what a finished round wrote is written out and dropped from the page cache.
    Kept there, the rounds' files grew the cache past the memory this VM had touched
    lately, and the host backs a guest page it has not seen for a while only on first
    touch: 3.0 s a GiB against 0.4 s for memory used recently (measured). From the third
    round on every page either tool wrote paid that, ~0.8 s a round for imagetool's
    Debian pull+unpack. The registry's blobs, and the layout an unpack reads, stay cached."""
    os.sync()
    stack = [d]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    try:
                        fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                    except OSError:
                        continue
                    try:
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    finally:
                        os.close(fd)


def _discard_all() -> None:
    while _KEPT:
        shutil.rmtree(_KEPT.pop(), ignore_errors=True)


def bench_pull_unpack(name: str, ref: str, workdir: str, n: int) -> tuple[Bench, Bench]:
    """Pull into a new layout, then unpack it into a new bundle; both timed."""
    def cycle(cand: str, rss: bool = False) -> dict:
        pull, unpack = STEPS[cand]
        d = _fresh(workdir)
        try:
            layout, bundle = os.path.join(d, "layout"), os.path.join(d, "bundle")
            p = pull(ref, layout, rss)
            u = unpack(layout, bundle, rss)
            return {"pull": p.wall, "unpack": u.wall, "total": p.wall + u.wall,
                    "pull-rss": p.maxrss_kib, "unpack-rss": u.maxrss_kib}
        finally:
            _discard(d)

    samples = interleave({c: (lambda i, c=c: cycle(c)) for c in STEPS}, n)
    bench = Bench(f"pull-unpack-{name}", f"pull + unpack of {name} (wall per step)", "s")
    for cand, outs in samples.items():
        for p in ("pull", "unpack", "total"):
            bench.values[f"{cand}:{p}"] = [o[p] for o in outs]
    bench.ratios = [(f"{OURS}:{p}", f"{PEERS}:{p}") for p in ("total", "pull", "unpack")]
    rss_runs = interleave({c: (lambda i, c=c: cycle(c, rss=True)) for c in STEPS}, 2, warmup=0)
    rss = Bench(f"rss-{name}", f"peak RSS of pull and of unpack, {name}", "KiB")
    for cand, outs in rss_runs.items():
        for p in ("pull-rss", "unpack-rss"):
            rss.values[f"{cand}:{p}"] = [o[p] for o in outs]
    rss.ratios = [(f"{OURS}:{p}", f"{PEERS}:{p}") for p in ("pull-rss", "unpack-rss")]
    return bench, rss


def bench_unpack_alone(name: str, layout: str, workdir: str, n: int) -> Bench:
    """imagetool unpack and umoci unpack of the very same layout (pulled once by imagetool)."""
    def one(cand: str) -> float:
        d = _fresh(workdir)
        try:
            return STEPS[cand][1](layout, os.path.join(d, "bundle")).wall
        finally:
            _discard(d)
    samples = interleave({c: (lambda i, c=c: one(c)) for c in STEPS}, n)
    return Bench(f"unpack-{name}", f"unpack alone of {name}, same layout for both", "s", samples,
                 [(OURS, PEERS)])


def bench_repull(name: str, ref: str, workdir: str, n: int) -> Bench:
    """A second pull of an image whose every blob is already in the layout."""
    layouts = {}
    for cand in STEPS:
        layouts[cand] = os.path.join(_fresh(workdir), "layout")
        STEPS[cand][0](ref, layouts[cand])
    samples = interleave({c: (lambda i, c=c: STEPS[c][0](ref, layouts[c]).wall) for c in STEPS}, n)
    for cand in STEPS:
        _discard(os.path.dirname(layouts[cand]))
    bench = Bench(f"repull-{name}", f"no-change re-pull of {name} into a layout that has it", "s",
                  samples, [(OURS, PEERS)])
    bench.notes.append("skopeo copy to an existing oci: layout (it skips blobs already present)")
    return bench


def run_all(workdir: str, quick: bool, log, names: list[str] | None = None,
            profile: list[str] | None = None) -> tuple[list[Bench], list[str]]:
    """The image benchmarks; with `profile` (a list), profile_unpack's lines are added to it,
    after the timed rounds and before anything is deleted (see _discard)."""
    for tool in ("skopeo", "umoci"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} not installed: the image benchmarks need it as the peer")
    if not os.access(IMAGETOOL, os.X_OK):
        raise BenchError(f"{IMAGETOOL} not installed (make setup)")
    os.makedirs(workdir, exist_ok=True)
    _compile_tree()
    deb_image, desc = debian.load_or_build(log)
    notes = [f"Debian image: {debian.describe(desc)}",
             "busybox image: one layer, busybox-static and its applet links (tests/support/images.py)",
             "registry: Debian's docker-registry on 127.0.0.1, plain HTTP; layouts and bundles are new "
             "directories every round, dropped from the page cache after their round and deleted only when the "
             "section ends (bench/images.py _discard)"]
    benches: list[Bench] = []
    notes.append(f"one empty-file create in the work directory before the rounds: "
                 f"{_create_cost(workdir, keep=True):.1f} us (a large deletion in the minutes "
                 "before raises it for both tools: see bench/README.md)")
    try:
        _run_steps(workdir, names, quick, deb_image, benches, notes, log)
        if profile is not None:
            log("images: debian: what an unpack costs per tar entry …")
            profile += profile_unpack(workdir, log)
    finally:
        _discard_all()
    return benches, notes


def _run_steps(workdir, names, quick, deb_image, benches, notes, log) -> None:
    from tests.support import images as timg
    from tests.support.registry import Registry
    with Registry(os.path.join(workdir, "registry")) as reg:
        refs = {"busybox": f"{reg.address}/bench/busybox:latest",
                "debian": f"{reg.address}/bench/debian:latest"}
        timg.push(reg.address, "bench/busybox", "latest", timg.busybox_image())
        log("images: pushing the Debian image to the local registry …")
        timg.push(reg.address, "bench/debian", "latest", deb_image)
        counts = {"busybox": (6, 3) if quick else (20, 10), "debian": (2, 2) if quick else (5, 4)}
        for name, ref in refs.items():
            if names and name not in names:
                continue
            n, n_unpack = counts[name]
            steps = [("pull + unpack", lambda: list(bench_pull_unpack(name, ref, workdir, n))),
                     ("unpack alone", lambda: [_unpack_alone(name, ref, workdir, n_unpack)]),
                     ("re-pull", lambda: [bench_repull(name, ref, workdir, max(n, 5))])]
            for label, step in steps:
                log(f"images: {name}: {label} …")
                for attempt in (1, 2):  # one retry: the tree under test is edited live
                    try:
                        benches += step()
                        break
                    except BenchError as e:
                        log(f"images: {name}: {label} FAILED (attempt {attempt}): {e}")
                        if attempt == 2:
                            notes.append(f"FAILED {name} {label}: {e}")
                        else:
                            time.sleep(20)


def _compile_tree() -> None:
    """Bytecode for imagetool and specs as the working tree has them now. An installed
    package has it; here a module edited since its .pyc was written would be compiled
    again by every timed run when PYTHONDONTWRITEBYTECODE is set (unpacker.py: ~25 ms,
    most of a busybox unpack)."""
    import compileall
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for pkg in ("imagetool", "specs"):
        compileall.compile_dir(os.path.join(top, pkg), quiet=2)


def _unpack_alone(name: str, ref: str, workdir: str, n: int) -> Bench:
    d = _fresh(workdir)
    try:
        layout = os.path.join(d, "layout")
        _imagetool_pull(ref, layout)
        return bench_unpack_alone(name, layout, workdir, n)
    finally:
        _discard(d)


def _cpu_of(argv: list[str]) -> tuple[float, float, float]:
    """(wall, user, sys) seconds of one run of argv, from wait4's rusage."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise BenchError(f"{' '.join(argv[:4])}: exit {p.returncode}")
    return time.perf_counter() - t0, usage.ru_utime, usage.ru_stime


def _create_cost(where: str, n: int = 2000, keep: bool = False) -> float:
    """Microseconds to create one empty file in a new directory under `where`: on this
    unjournaled ext4 it grows with the inodes deleted in the last minutes (ext4 skips
    each one it finds still recent), whoever deleted them. `keep`: the files stay until
    the section ends (_discard), so that measuring does not delete before the rounds."""
    d = tempfile.mkdtemp(dir=where)
    try:
        fd = os.open(d, os.O_PATH)
        t0 = time.perf_counter()
        for i in range(n):
            os.close(os.open(str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd))
        cost = (time.perf_counter() - t0) / n * 1e6
        os.close(fd)
        return cost
    finally:
        if keep:
            _discard(d)
        else:
            shutil.rmtree(d, ignore_errors=True)


def profile_unpack(workdir: str, log) -> list[str]:
    """What an unpack of the Debian image costs per tar entry: CPU against umoci's, the
    syscalls an entry takes, the producer (read, hash, inflate, hash) and the tar reader
    alone, and what one file create costs on this filesystem right now."""
    from imagetool import tarstream, unpacker
    _, desc = debian.load_or_build(log)
    entries = desc["entries"]
    image = f"{debian.LAYOUT}:{debian.TAG}"
    out = [f"Debian image, {entries} tar entries (`python -m bench.images --profile` prints this alone)", ""]
    out.append(f"- one empty-file create: {_create_cost(workdir, keep=True):.1f} us here, "
               f"{_create_cost('/dev/shm'):.1f} us on tmpfs")
    rows = {}
    for i in range(3):  # interleaved; the least of three
        for name, argv in (("imagetool", [IMAGETOOL, "unpack", image]),
                           ("umoci", ["umoci", "--log", "error", "unpack", "--image", image])):
            d = _fresh(workdir)
            _discard(d)
            w, u, s = _cpu_of(argv + [os.path.join(d, "b")])
            best = rows.get(name)
            rows[name] = (w, u, s) if best is None or u + s < best[1] + best[2] else best
    for name, (w, u, s) in rows.items():
        out.append(f"- {name} unpack: wall {w:.2f} s, CPU user {u:.2f} s + sys {s:.2f} s "
                   f"= {(u + s) / entries * 1e6:.0f} us an entry")
    it, um = rows["imagetool"], rows["umoci"]
    out.append(f"- CPU imagetool/umoci: {(it[1] + it[2]) / (um[1] + um[2]):.2f}×")
    layout, manifest, config = unpacker._load_image(debian.LAYOUT, debian.TAG)
    plan = unpacker._layer_plan(manifest, config)
    t0 = time.process_time()
    tars = []
    for ldesc, diff_id in plan:
        with layout.open_blob(ldesc["digest"]) as f:
            tars.append(list(unpacker.layer_chunks(f, ldesc, diff_id)))
    producer = time.process_time() - t0
    t0 = time.process_time()
    for chunks in tars:
        reader = tarstream.TarReader(iter(chunks))
        while (h := reader.next()) is not None:
            reader.skip_data(h.name)
    reader_cpu = time.process_time() - t0
    del tars
    out.append(f"- producer alone (read, sha256 of the blob, inflate, sha256 of the tar), one "
               f"thread: {producer:.2f} s CPU = {producer / entries * 1e6:.0f} us an entry")
    out.append(f"- tar reader alone (headers parsed, data skipped): {reader_cpu * 1000:.0f} ms CPU "
               f"= {reader_cpu / entries * 1e6:.1f} us an entry")
    if shutil.which("strace"):
        d = _fresh(workdir)
        _discard(d)
        trace = os.path.join(d, "strace.txt")
        run(["strace", "-f", "-c", "-o", trace, IMAGETOOL, "unpack", image, os.path.join(d, "b")],
            timeout=600)
        out += ["", "syscalls of one imagetool unpack (strace -f -c; per entry = calls / entries):",
                "", "| syscall | calls | per entry |", "|---|---:|---:|"]
        with open(trace) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    calls = int(parts[3])
                    if calls >= entries // 20:
                        out.append(f"| {parts[-1]} | {calls} | {calls / entries:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.images [--quick] [--profile] [NAME …]`: the image benchmarks alone, printed and
    nothing written (results.md is `python -m bench images`'s), so a change to imagetool can
    be measured without touching the recorded results."""
    import argparse
    from bench import report
    from bench.__main__ import log
    from bench.measure import become_subreaper, reap_zombies
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=main.__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="busybox, debian (default: both)")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--profile", action="store_true",
                        help="instead: what an unpack of the Debian image costs per tar entry")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in ("busybox", "debian"):
            parser.error(f"unknown image {name!r} (choose from busybox, debian)")
    become_subreaper()
    work = tempfile.mkdtemp(prefix="pyrun-bench-images-")
    if args.profile:
        _compile_tree()
        try:
            print("\n".join(profile_unpack(work, log)))
        finally:
            _discard_all()
            shutil.rmtree(work, ignore_errors=True)
        return 0
    try:
        benches, notes = run_all(work, args.quick, log, args.names or None)
    finally:
        reap_zombies()
        shutil.rmtree(work, ignore_errors=True)
    for note in notes:
        print(f"- {note}")
    for bench in benches:
        print("\n".join(report.bench_table(bench)))
    measured = {b.name: b for b in benches}
    print("\nTargets measured in this run:\n")
    for row in report.evaluate(measured):
        if row["verdict"] != "not measured":
            print(f"- issue {row['issue']}: {row['target']}: {row['measured']}: {row['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
