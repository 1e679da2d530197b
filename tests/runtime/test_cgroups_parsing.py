"""What the cgroup commands read from their callers, parsed as runc parses it."""
import pytest

from runtime.cgroups import cgroup_path
from runtime.cgroups.fields import swap_v2
from runtime.cgroups.v2_resources import cpu_weight, io_weight
from runtime.errors import ConfigError


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


def test_v2_conversions_are_runc_1_1s():
    assert swap_v2(64 << 20, 96 << 20) == 32 << 20
    assert swap_v2(64 << 20, 0) == 0 and swap_v2(-1, 0) == -1 and swap_v2(64 << 20, -1) == -1
    for limit, swap in ((0, 64 << 20), (64 << 20, 32 << 20)):
        with pytest.raises(ConfigError, match="memory.swap"):
            swap_v2(limit, swap)
    assert [cpu_weight(s) for s in (2, 512, 1024, 262144)] == [1, 20, 39, 10000]
    assert [io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
