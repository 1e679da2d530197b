# setuptools' pyproject support has no key for cffi_modules yet; this is the one
# thing setup.py is for: compile the C shim when the package installs.
from setuptools import setup

setup(cffi_modules=["runtime/_shim/build_shim.py:ffi"])
