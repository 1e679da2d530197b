"""The documented Python API's examples run as written (doctest): runtime.Container and
imagetool.pull / imagetool.unpack."""
import doctest
import os

import pytest


def _run(obj, globs):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(obj, globs=globs)
    assert tests and tests[0].examples, f"{obj.__qualname__} has no example"
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{obj.__qualname__}: {runner.failures} example(s) failed (see output)"


def test_container_example(tmp_path, bundle, root_required):
    from runtime import Container
    _run(Container, {"Container": Container, "bundle": bundle(["sleep", "100"]),
                     "root": str(tmp_path / "api-root")})


def test_pull_and_unpack_examples(tmp_path, tmp_path_factory):
    import imagetool
    from tests.support import images
    from tests.support.registry import Registry, RegistryUnavailable
    try:
        reg = Registry(str(tmp_path_factory.mktemp("doc-registry"))).start()
    except RegistryUnavailable as e:
        pytest.skip(str(e))
    try:
        images.push(reg.address, "doc/busybox", "latest", images.busybox_image())
        globs = {"imagetool": imagetool, "os": os, "ref": f"{reg.address}/doc/busybox:latest",
                 "layout": str(tmp_path / "layout"), "bundle_dir": str(tmp_path / "bundle")}
        _run(imagetool.pull, globs)
        _run(imagetool.unpack, globs)
    finally:
        reg.stop()
