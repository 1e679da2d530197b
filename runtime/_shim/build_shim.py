"""Build the C shim: CFFI API mode, out-of-line, compiled when the package installs.

Each module in src/ declares one concern (INCLUDES, TYPES, FUNCTIONS, CUSTOMIZATIONS),
as pyca/cryptography does; this file only joins them. Nothing else imports cffi's
build machinery. setuptools runs this file by path, so the sibling modules are
loaded by path too.
"""
import importlib.util
import os

from cffi import FFI

MODULES = ["process", "namespaces", "mounts", "seccomp", "bpf"]
HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"_pyrun_shim_src_{name}", os.path.join(HERE, "src", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_ffi():
    mods = [_load(n) for n in MODULES]
    ffi = FFI()
    ffi.cdef("\n".join(m.TYPES + "\n" + m.FUNCTIONS for m in mods))
    source = "\n".join(m.INCLUDES for m in mods) + "\n" + "\n".join(m.CUSTOMIZATIONS for m in mods)
    libraries = sorted({lib for m in mods for lib in getattr(m, "LIBRARIES", [])})
    # The fork hooks (PyOS_BeforeFork/AfterFork_*) are outside the limited API.
    ffi.set_source("runtime._shim._native", source, libraries=libraries, py_limited_api=False,
                   define_macros=[("_CFFI_NO_LIMITED_API", None)],
                   extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"])
    return ffi


ffi = build_ffi()

if __name__ == "__main__":
    ffi.compile(tmpdir=os.path.join(HERE, "..", ".."), verbose=True)
