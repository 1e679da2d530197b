"""The fuzz targets' one-input functions over their seeds, without atheris: the harness
itself cannot rot between `make fuzz` runs (tests/fuzz/fuzz_*.py say what each checks)."""
import os

import pytest

from tests.fuzz import fuzz_config, fuzz_unpack


@pytest.fixture(autouse=True)
def workdirs(tmp_path, monkeypatch):
    """The targets' scratch directories in tmp_path, not left in /tmp."""
    (tmp_path / "bundle" / "rootfs").mkdir(parents=True)
    monkeypatch.setattr(fuzz_config, "_BUNDLE", str(tmp_path / "bundle"))
    monkeypatch.setattr(fuzz_unpack, "_SANDBOX", fuzz_unpack.Sandbox(str(tmp_path / "unpack")))


@pytest.mark.parametrize("seed", fuzz_config.SEEDS, ids=lambda s: f"{s[:12]!r}")
def test_config_seed(seed):
    fuzz_config.check(seed)


def test_config_recipes_reach_the_checks_behind_the_schema():
    """A recipe is an edited default config: valid JSON, and sometimes accepted whole."""
    import json
    docs = [fuzz_config.document(s) for s in fuzz_config.SEEDS if s[0] % 2]
    assert all(isinstance(json.loads(d), dict) for d in docs)
    assert fuzz_config.document(b"\x01") != fuzz_config.document(b"\x01\x07\x00\x00\x00\x10")


def test_config_check_stops_before_anything_is_made():
    """An accepted config stops at the ID's claim: no state root, no cgroup."""
    fuzz_config.check(fuzz_config.SEEDS[0])
    assert not os.path.exists(os.path.join(fuzz_config._bundle(), "state"))
    assert not os.path.exists("/sys/fs/cgroup/pids/fuzz")


@pytest.mark.parametrize("seed", fuzz_unpack.seeds(), ids=lambda s: f"{s[:12]!r}")
def test_unpack_seed(seed):
    fuzz_unpack.check(seed)


def test_unpack_check_sees_a_write_outside():
    """The sandbox's own check fails when something lands in `outside`: it can fail."""
    box = fuzz_unpack.sandbox()
    with open(os.path.join(box.outside, "planted"), "w"):
        pass
    try:
        with pytest.raises(AssertionError, match="written outside"):
            box.check()
    finally:
        os.unlink(os.path.join(box.outside, "planted"))
    box.check()


# -- found by make fuzz (fixed since in 4cdf5fc, aa00226) ---------------------------------------

def _config_with_root_path(path: str) -> bytes:
    import json
    cfg = fuzz_config.base_config()
    cfg["root"]["path"] = path
    return b"\x00" + json.dumps(cfg).encode()


@pytest.mark.parametrize("path", ["root\0fs", "root\ud800fs"])
def test_config_root_path_the_kernel_cannot_take(path):
    """create's os.path.realpath of root.path raised ValueError (NUL) and UnicodeEncodeError
    (a lone surrogate), neither of them a PyrunError."""
    fuzz_config.check(_config_with_root_path(path))


def test_config_root_path_create_cannot_resolve():
    """create's os.path.realpath of root.path let an OSError out of Container.create (here
    EACCES on /proc/1/root), not a PyrunError (the CLI still printed one line for it)."""
    fuzz_config.check(_config_with_root_path("/proc/1/root"))
