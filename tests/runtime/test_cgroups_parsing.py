"""What the cgroup commands read from their callers, parsed as runc parses it."""
import pytest

from runtime.cgroups import cgroup_path
from runtime.cgroups.fields import swap_v2
from runtime.cgroups.v2_resources import cpu_weight, io_weight
from runtime.errors import ConfigError, PyrunError
from runtime.events import parse_duration
from runtime.update import ram_in_bytes


@pytest.mark.parametrize("given,want", [
    (None, "/cg-id"), ("", "/cg-id"), ("/a/b", "/a/b"), ("/a//b/./c/", "/a/b/c"), ("a/b", "a/b"),
    ("./a", "a"), ("/pod:1/c", "/pod:1/c"), ("a:b", "a:b"),
])
def test_cgroups_path_is_cleaned_like_runc(given, want):
    assert cgroup_path(given, "cg-id") == want


@pytest.mark.parametrize("given", ["..", "a/../b", "/a/..", "../../x", "/", ".", "//./", "system.slice:pre:name",
                                   "a\0b"])
def test_cgroups_path_escapes_roots_and_systemd_names_are_refused(given):
    with pytest.raises(ConfigError, match="cgroupsPath"):
        cgroup_path(given, "cg-id")


@pytest.mark.parametrize("given,want", [
    ("1048576", 1 << 20), ("64m", 64 << 20), ("64M", 64 << 20), ("64MB", 64 << 20), ("64MiB", 64 << 20),
    ("1.5g", 3 << 29), ("2 kb", 2048), ("-1", -1),
])
def test_memory_flags_take_docker_units(given, want):
    assert ram_in_bytes(given, "--memory") == want


@pytest.mark.parametrize("given", ["", "lots", "-5", "64x", "1e6", "m"])
def test_bad_memory_flags_are_refused(given):
    with pytest.raises(PyrunError, match="invalid value for --memory"):
        ram_in_bytes(given, "--memory")


@pytest.mark.parametrize("given,want", [("5s", 5.0), ("300ms", 0.3), ("1m30s", 90.0), ("1.5h", 5400.0),
                                        ("250us", 0.00025)])
def test_interval_is_a_go_duration(given, want):
    assert parse_duration(given) == pytest.approx(want)


@pytest.mark.parametrize("given", ["", "5", "s", "5 s", "5sec", "-1s"])
def test_bad_intervals_are_refused(given):
    with pytest.raises(PyrunError, match="interval"):
        parse_duration(given)


def test_v2_conversions_are_runc_1_1s():
    assert swap_v2(64 << 20, 96 << 20) == 32 << 20
    assert swap_v2(64 << 20, 0) == 0 and swap_v2(-1, 0) == -1 and swap_v2(64 << 20, -1) == -1
    for limit, swap in ((0, 64 << 20), (64 << 20, 32 << 20)):
        with pytest.raises(ConfigError, match="memory.swap"):
            swap_v2(limit, swap)
    assert [cpu_weight(s) for s in (2, 512, 1024, 262144)] == [1, 20, 39, 10000]
    assert [io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]


def _hierarchy_roots() -> list[str]:
    from runtime.cgroups.hierarchy import mounts
    return [mp for mp, _, _ in mounts()]


def test_a_recorded_cgroup_dir_that_is_a_hierarchy_root_is_refused(tmp_path):
    """The guard delete, kill --all and update rely on when they read a directory back
    from a record: every hierarchy root of this host, the directories above them, a path
    that climbs with `..`, and a symlink to a root are each refused; the container's own
    kind of directory passes (whether it exists yet or not)."""
    from runtime.cgroups.hierarchy import not_a_root
    roots = _hierarchy_roots()
    if not roots:
        pytest.skip("no cgroup filesystem is mounted here")
    link = tmp_path / "link"
    link.symlink_to(roots[0])
    for d in [*roots, "/", "/sys", "/sys/fs", "/sys/fs/cgroup", roots[0] + "/x/..", roots[0] + "/..",
              roots[0] + "/./x", "relative/x", str(link)]:
        with pytest.raises(PyrunError, match="root of a hierarchy"):
            not_a_root(d)
    for d in (roots[0] + "/pyrun-guard-never-made", roots[0] + "/a/b"):
        assert not_a_root(d) == d
