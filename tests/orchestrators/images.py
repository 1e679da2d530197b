"""The images the orchestrator tests run, built here from busybox-static: nothing comes
from the internet."""
import os
import tarfile

from tests.support import images

# Beyond tests.support.images' applets: what the orchestrator tests run inside.
EXTRA_APPLETS = ("tr", "tail", "dd", "mount", "cut", "seq", "nproc", "printf", "date", "sed",
                 "tty", "cmp", "find", "xargs", "timeout")
NAME_ANNOTATION = "io.containerd.image.name"


def busybox_entries() -> list[images.Entry]:
    entries = images.busybox_entries()
    have = {e.path for e in entries}
    entries += [images.Entry(f"bin/{a}", "symlink", linkname="busybox", mode=0o777)
                for a in EXTRA_APPLETS if f"bin/{a}" not in have]
    entries.append(images.Entry("run", "dir", mode=0o755))
    return entries


def rootfs_tar(path: str) -> str:
    """A plain rootfs tarball, as `podman import` takes it."""
    with open(path, "wb") as f:
        f.write(images.tar_layer(busybox_entries()))
    return path


def busybox_image(cmd: list[str], entrypoint: list[str] | None = None) -> images.Image:
    return images.build_image([images.tar_layer(busybox_entries())], cmd=cmd, entrypoint=entrypoint)


def pause_image() -> images.Image:
    """A pod's sandbox process made from busybox: it waits, and leaves at once on SIGTERM
    or SIGINT (as the pause binary does; a pid 1 without handlers would ignore them)."""
    return busybox_image(["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 1; done"])


def oci_archive(path: str, named: dict[str, images.Image]) -> str:
    """An OCI layout tarred as one archive (what `ctr images import` reads), each image
    named by containerd's own annotation so the import needs no --base-name."""
    layout = path + ".layout"
    images.write_layout(layout, named)
    _name_manifests(layout, named)
    with tarfile.open(path, "w") as t:
        for entry in sorted(os.listdir(layout)):
            t.add(os.path.join(layout, entry), arcname=entry)
    return path


def _name_manifests(layout: str, named: dict[str, images.Image]) -> None:
    import json
    index_path = os.path.join(layout, "index.json")
    with open(index_path) as f:
        index = json.load(f)
    for desc in index["manifests"]:
        desc["annotations"][NAME_ANNOTATION] = desc["annotations"]["org.opencontainers.image.ref.name"]
    with open(index_path, "w") as f:
        json.dump(index, f)
