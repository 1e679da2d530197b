"""Runtime test bundles: a busybox-static rootfs and runc's default config, made in Python."""
import json
import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "true", "false", "cat", "ls", "id", "hostname", "sleep", "mkdir", "touch",
           "ps", "grep", "test", "readlink", "stat", "env", "pwd", "umask", "mount", "kill", "wc",
           "head", "tr", "date", "ulimit", "whoami", "printf", "rm", "ln", "uname", "nproc")


def make_rootfs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home", "run"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    for a in APPLETS:
        link = os.path.join(path, "bin", a)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
    with open(os.path.join(path, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    return path


_RUNC_SPEC: dict | None = None


def default_config() -> dict:
    """runc's own default config (specs.default_config is checked against the same)."""
    global _RUNC_SPEC
    if _RUNC_SPEC is None:
        try:
            from specs.runtime import default_config as ours
            _RUNC_SPEC = ours()
        except ImportError:
            tmp = "/tmp/pyrun-test-spec"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            subprocess.run(["runc", "spec", "--bundle", tmp], check=True)
            with open(os.path.join(tmp, "config.json")) as f:
                _RUNC_SPEC = json.load(f)
    return json.loads(json.dumps(_RUNC_SPEC))


def make_bundle(path: str, args=("true",), rootfs: str | None = None, **changes) -> str:
    """A bundle at `path` whose rootfs is a fresh busybox tree (or a bind of `rootfs`)."""
    os.makedirs(path, exist_ok=True)
    if rootfs is None:
        make_rootfs(os.path.join(path, "rootfs"))
    else:
        os.symlink(rootfs, os.path.join(path, "rootfs"))
    config = default_config()
    config["process"]["terminal"] = False
    config["process"]["args"] = list(args)
    for key, value in changes.items():
        config[key] = value
    write_config(path, config)
    return path


def read_config(bundle: str) -> dict:
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def write_config(bundle: str, config: dict) -> None:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
