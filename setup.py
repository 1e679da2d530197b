# setuptools' pyproject support has no key for cffi_modules yet: setup.py compiles
# the C shim (cffi_modules) and the static exec helper when the package installs.
import os
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

HELPER_SRC = "runtime/_shim/exec_helper.c"
HELPER = "pyrun-exec"


class BuildExtWithExecHelper(build_ext):
    """Also build pyrun-exec: a libc-free static binary (see exec_helper.c for why)."""

    def run(self):
        super().run()
        out_dir = "runtime/_shim" if self.inplace else os.path.join(self.build_lib, "runtime", "_shim")
        os.makedirs(out_dir, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        subprocess.check_call([cc, "-Os", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector",
                               "-fno-asynchronous-unwind-tables", "-Wl,--build-id=none", "-o",
                               os.path.join(out_dir, HELPER), HELPER_SRC])


setup(cffi_modules=["runtime/_shim/build_shim.py:ffi"], cmdclass={"build_ext": BuildExtWithExecHelper})
