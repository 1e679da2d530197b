"""`make demo`: the main job end to end on a built-in default.

A local registry (Debian's docker-registry on 127.0.0.1) is seeded with a busybox
image made from busybox-static, then the real commands run, as a user would type
them: imagetool pull → imagetool unpack → pyrun run.
"""
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from tests.support.registry import Registry
from tests.support.seed import seed

BIN = os.path.dirname(sys.executable)


def step(*argv: str) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], check=True)


def main() -> int:
    if os.getuid() != 0:
        print("make demo runs containers: run it as root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="pyrun-demo-")
    os.chmod(work, 0o755)
    try:
        with Registry(os.path.join(work, "registry")) as reg:
            ref = f"{reg.address}/demo/busybox:latest"
            seed(reg.address)
            print(f"# registry on {reg.address}, seeded with {ref} (busybox-static)", flush=True)
            layout, bundle = os.path.join(work, "layout"), os.path.join(work, "bundle")
            step("imagetool", "pull", ref, layout)
            step("imagetool", "unpack", f"{layout}:latest", bundle)
            step("pyrun", "--root", os.path.join(work, "state"), "run", "--bundle", bundle, "demo")
    except subprocess.CalledProcessError as e:
        print(f"demo: {e.cmd[0]} failed with exit status {e.returncode}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
