# setuptools' pyproject support has no key for cffi_modules yet: setup.py compiles
# the C shim (cffi_modules) and the static helpers when the package installs, and
# writes the #! lines of the pyrun and imagetool scripts.
import os
import subprocess
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext
from distutils.command.build_scripts import build_scripts  # setuptools' own copy, once setuptools is in

SHIM = "runtime/_shim"
# name → source: libc-free static binaries (see each source for why).
HELPERS = {"pyrun-exec": f"{SHIM}/exec_helper.c", "pyrun-launcher": f"{SHIM}/launcher.c"}
LAUNCHER = "pyrun-launcher"
# pyrun's interpreter flags: no site, no .pth processing, no sitecustomize, no
# user site; runtime/_bin/pyrun adds the venv's paths itself.
PYRUN_FLAGS = "-IS"
# imagetool's script is pyrun's with its own last lines: the same paths set up by hand
# (site and its .pth files: ~0.6 ms of every call), then imagetool's entry.
ENTRY = {"pyrun": "from runtime.main import script  # noqa: E402\nscript()\n",
         "imagetool": "from imagetool.cli import main  # noqa: E402\nmain()\n"}


class BuildExtWithHelpers(build_ext):
    """Also build pyrun-exec and pyrun-launcher."""

    def run(self):
        super().run()
        out_dir = SHIM if self.inplace else os.path.join(self.build_lib, "runtime", "_shim")
        os.makedirs(out_dir, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        for name, src in HELPERS.items():
            subprocess.check_call([cc, "-Os", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector",
                                   "-fno-asynchronous-unwind-tables", "-Wl,--build-id=none", "-o",
                                   os.path.join(out_dir, name), src])


class BuildScriptsThroughLauncher(build_scripts):
    """pyrun's #! line is `#!<pyrun-launcher> <python> -IS`: the kernel runs the launcher,
    which execs the interpreter from a read-only mount (runtime/_shim/launcher.c).
    imagetool's is `#!<python> -IS`: it runs no container, so nothing can reach its
    /proc/<pid>/exe from inside one.

    Written here because pip keeps no interpreter flags (it rewrites `#!python…` to
    `#!<python>`) and leaves any other #! line alone. <python> is the interpreter
    that builds us: pip runs the build backend with the target environment's own."""

    def copy_scripts(self):
        self.mkpath(self.build_dir)
        (script,) = self.scripts  # runtime/_bin/pyrun
        with open(script, encoding="utf-8") as f:
            f.readline()  # the source's own #! line, for running it from the tree
            body = f.read()
        paths = body[:body.index(ENTRY["pyrun"])]
        outfiles = []
        for name, interpreter in (("pyrun", f"{self._launcher()} {sys.executable}"),
                                  ("imagetool", sys.executable)):
            out = os.path.join(self.build_dir, name)
            with open(out, "w", encoding="utf-8") as f:
                f.write(f"#!{interpreter} {PYRUN_FLAGS}\n" + paths + ENTRY[name])
            os.chmod(out, 0o755)
            outfiles.append(out)
        return outfiles, outfiles

    def _launcher(self) -> str:
        if self.get_finalized_command("build_ext").inplace:  # editable: `make setup`
            return os.path.abspath(os.path.join(SHIM, LAUNCHER))
        # A wheel: where this interpreter's environment will hold the package.
        return os.path.join(sysconfig.get_path("platlib"), "runtime", "_shim", LAUNCHER)


setup(cffi_modules=["runtime/_shim/build_shim.py:ffi"],
      cmdclass={"build_ext": BuildExtWithHelpers, "build_scripts": BuildScriptsThroughLauncher})
