"""The realistic image of issue 9: a debootstrap'ed Debian minbase plus three layers with
whiteouts, built once and cached as an OCI layout under bench/.cache/debian-image.

debootstrap runs inside `unshare -m`, so the /proc and /sys it mounts in the target
vanish with that private namespace. Without debootstrap (or without Debian's
archive) the base layer is a tree of this machine's own files instead (its Python
standard library, zoneinfo, docs, /etc), and the description says so.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from bench.measure import CACHE, BenchError
from tests.support import images
from tests.support.images import Entry

LAYOUT = os.path.join(CACHE, "debian-image")
TAG = "bench"
FORMAT = 2  # bump to rebuild a cache made by an older recipe


def load_or_build(log) -> tuple[images.Image, dict]:
    """(image, description) from the cache, building it first if missing."""
    desc_path = os.path.join(LAYOUT, "bench-image.json")
    if os.path.exists(desc_path):
        with open(desc_path) as f:
            desc = json.load(f)
        if desc.get("format") == FORMAT:
            return _load(LAYOUT), desc
    shutil.rmtree(LAYOUT, ignore_errors=True)
    log("images: building the realistic image once (cached in bench/.cache/debian-image) …")
    work = tempfile.mkdtemp(prefix="pyrun-bench-debian-")
    try:
        root = os.path.join(work, "rootfs")
        how = _debootstrap(root, log)
        if how is None:
            how = _host_tree(root)
        base = _tar(root)
        uppers = _upper_layers(root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    img = images.build_image([base, *uppers], cmd=["/bin/sh"])
    images.write_layout(LAYOUT, {TAG: img})
    desc = {"format": FORMAT, "base": how, "layers": len(img.layers),
            "compressed_bytes": sum(len(b.data) for b in img.layers),
            "uncompressed_bytes": len(base) + sum(len(u) for u in uppers),
            "entries": _count_entries([base, *uppers])}
    with open(desc_path, "w") as f:
        json.dump(desc, f)
    return img, desc


def describe(desc: dict) -> str:
    return (f"{desc['base']} + 3 layers with whiteouts and an opaque directory: {desc['layers']} layers, "
            f"{desc['compressed_bytes'] / 1e6:.1f} MB compressed, {desc['uncompressed_bytes'] / 1e6:.0f} MB "
            f"of tar, {desc['entries']} tar entries")


def _load(layout: str) -> images.Image:
    def blob(d: dict) -> images.Blob:
        with open(os.path.join(layout, "blobs", "sha256", d["digest"].split(":")[1]), "rb") as f:
            return images.Blob(d["mediaType"], f.read())
    with open(os.path.join(layout, "index.json")) as f:
        mdesc = json.load(f)["manifests"][0]
    manifest = blob(mdesc)
    doc = json.loads(manifest.data)
    return images.Image(manifest, blob(doc["config"]), [blob(d) for d in doc["layers"]])


def _mirror_and_suite() -> tuple[str, str]:
    suite = "bookworm"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    suite = line.split("=", 1)[1].strip().strip('"') or suite
    except OSError:
        pass
    mirror = "http://deb.debian.org/debian"
    src = "/etc/apt/sources.list.d/debian.sources"
    if os.path.exists(src):
        with open(src) as f:
            for line in f:
                if line.startswith("URIs:") and "security" not in line:
                    mirror = line.split()[1]
                    break
    return mirror, suite


def _debootstrap(root: str, log) -> str | None:
    if not shutil.which("debootstrap") or not shutil.which("unshare"):
        log("images: debootstrap not installed: the base layer is made of this machine's files")
        return None
    mirror, suite = _mirror_and_suite()
    log(f"images: debootstrap --variant=minbase {suite} from {mirror} (about a minute) …")
    p = subprocess.run(["unshare", "-m", "debootstrap", "--variant=minbase", suite, root, mirror],
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        log(f"images: debootstrap failed ({tail[0]}): the base layer is made of this machine's files")
        shutil.rmtree(root, ignore_errors=True)
        return None
    # What an image build would drop: the downloaded .debs and the device nodes.
    archives = os.path.join(root, "var", "cache", "apt", "archives")
    for name in os.listdir(archives):
        if name.endswith(".deb"):
            os.unlink(os.path.join(archives, name))
    return f"debootstrap --variant=minbase {suite} ({mirror})"


def _host_tree(root: str) -> str:
    os.makedirs(root, exist_ok=True)
    picked = ["usr/lib/python3.11", "usr/share/zoneinfo", "usr/share/doc", "usr/share/man", "etc"]
    for rel in picked:
        src = os.path.join("/", rel)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, rel), symlinks=True, ignore_dangling_symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    for d in ("bin", "tmp", "var/cache/apt", "usr/share/locale"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    return "a tree of this machine's files (" + ", ".join("/" + p for p in picked) + "), debootstrap unavailable"


def _tar(root: str) -> bytes:
    p = subprocess.run(["tar", "--format=pax", "--numeric-owner", "--sort=name", "--exclude=./dev/*",
                        "--exclude=./proc/*", "--exclude=./sys/*", "-C", root, "-cf", "-", "."],
                       capture_output=True, timeout=600)
    if p.returncode != 0:
        raise BenchError(f"tar {root}: {p.stderr.decode(errors='replace').strip()[-200:]}")
    return p.stdout


def _sample_files(root: str, limit: int) -> list[str]:
    """Relative paths of up to `limit` regular files under root/usr/lib, for realistic content."""
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "usr", "lib")):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) < (1 << 20):
                out.append(os.path.relpath(path, root))
                if len(out) >= limit:
                    return out
    return out


def _upper_layers(root: str) -> list[bytes]:
    """Three layers as an image build would stack them: an app added with a cache
    dir made opaque and docs whited out; an update replacing and deleting app files;
    a clean-up removing whole trees."""
    def read(rel: str) -> bytes:
        with open(os.path.join(root, rel), "rb") as f:
            return f.read()
    samples = _sample_files(root, 600)
    docs = sorted(os.listdir(os.path.join(root, "usr", "share", "doc")))[:20] \
        if os.path.isdir(os.path.join(root, "usr", "share", "doc")) else []
    app = [Entry("opt", "dir", mode=0o755), Entry("opt/app", "dir", mode=0o755)]
    app += [Entry(f"opt/app/{i // 100:02d}", "dir", mode=0o755) for i in range(0, len(samples), 100)]
    app += [Entry(f"opt/app/{i // 100:02d}/{os.path.basename(rel)}.{i}", data=read(rel))
            for i, rel in enumerate(samples)]
    app += [Entry("var", "dir", mode=0o755), Entry("var/cache", "dir", mode=0o755),
            Entry("var/cache/apt", "dir", mode=0o755), Entry("var/cache/apt/.wh..wh..opq"),
            Entry("var/cache/apt/pkgcache.note", data=b"rebuilt by the app layer\n"),
            Entry("usr", "dir", mode=0o755), Entry("usr/share", "dir", mode=0o755),
            Entry("usr/share/doc", "dir", mode=0o755)]
    app += [Entry(f"usr/share/doc/.wh.{name}") for name in docs]
    update = [Entry("opt", "dir", mode=0o755), Entry("opt/app", "dir", mode=0o755),
              Entry("opt/app/00", "dir", mode=0o755)]
    for i, rel in enumerate(samples[:100]):
        name = f"opt/app/00/{os.path.basename(rel)}.{i}"
        update.append(Entry(name, data=read(rel) + b"\n# updated\n") if i % 2 else
                      Entry(os.path.dirname(name) + "/.wh." + os.path.basename(name)))
    update += [Entry("etc", "dir", mode=0o755), Entry("etc/app.conf", data=b"workers = 4\n" * 50),
               Entry("etc/motd", data=b"built for pyrun's bench\n")]
    cleanup = [Entry("usr", "dir", mode=0o755), Entry("usr/share", "dir", mode=0o755),
               Entry("usr/share/.wh.man"), Entry("usr/share/.wh.locale"),
               Entry("opt", "dir", mode=0o755), Entry("opt/app", "dir", mode=0o755),
               Entry("opt/app/.wh.05"), Entry("tmp", "dir", mode=0o1777),
               Entry("tmp/.keep", data=b"")]
    return [images.tar_layer(app), images.tar_layer(update), images.tar_layer(cleanup)]


def _count_entries(tars: list[bytes]) -> int:
    import io
    import tarfile
    n = 0
    for t in tars:
        with tarfile.open(fileobj=io.BytesIO(t)) as tf:
            n += sum(1 for _ in tf)
    return n
