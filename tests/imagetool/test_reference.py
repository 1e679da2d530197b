import itertools
import re

import pytest

from imagetool.reference import ReferenceError, is_component, is_host, is_local_host, is_tag, parse

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("docker://alpine", "docker.io/library/alpine:latest"),
    ("user/app:v1.2-rc_3", "docker.io/user/app:v1.2-rc_3"),
    ("quay.io/coreos/etcd", "quay.io/coreos/etcd:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/ns/repo:tag", "localhost:5000/ns/repo:tag"),
    ("127.0.0.1:5000/a/b/c@" + D, "127.0.0.1:5000/a/b/c@" + D),
    ("127.0.0.1:5000/a:t@" + D, "127.0.0.1:5000/a:t@" + D),
    ("[::1]:5000/x", "[::1]:5000/x:latest"),
    ("my-host.example.com/a_b/c__d/e-f.g", "my-host.example.com/a_b/c__d/e-f.g:latest"),
])
def test_normalises(text, expected):
    assert str(parse(text)) == expected


def test_fields():
    ref = parse("busybox@" + D)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("docker.io", "library/busybox", None, D)
    assert ref.ref == D and ref.api_host == "registry-1.docker.io"
    ref = parse("127.0.0.1:5000/demo/bb")
    assert ref.ref == "latest" and ref.api_host == "127.0.0.1:5000" and ref.is_local


@pytest.mark.parametrize("text,why", [
    ("", "empty"),
    ("Busybox", "must be lowercase"),
    ("busy box", "whitespace"),
    ("busybox:", "invalid tag"),
    ("busybox:-x", "invalid tag"),
    ("busybox:" + "a" * 129, "invalid tag"),
    ("busybox@sha256:abc", "malformed digest"),
    ("busybox@md5:" + "a" * 32, "unsupported digest"),
    ("host.io/", "no repository"),
    ("a//b", "invalid repository name component"),
    ("a/-b", "invalid repository name component"),
    ("bad_host.io:x/repo", "invalid registry host"),
    ("host.io/" + "a" * 300, "longer than"),
])
def test_rejects_with_one_line(text, why):
    with pytest.raises(ReferenceError, match=why) as info:
        parse(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("host,local", [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.8.9.10", True),
    ("[::1]:5000", True), ("128.0.0.1", False), ("docker.io", False), ("127.0.0.1.nip.io", False),
    ("localhost.example.com", False),
])
def test_local_hosts(host, local):
    assert is_local_host(host) is local


# The distribution reference grammar (distribution/reference's regexp.go) as regular
# expressions: reference.py checks it by hand (no `re` on the pull path) and must agree.
GRAMMAR = {
    is_component: re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z"),
    is_tag: re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z"),
    is_host: re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?\Z"),
}


def test_hand_checks_agree_with_the_grammar():
    """Every string of up to 5 characters over an alphabet that reaches each branch
    (separators, case, brackets, ports, a non-ASCII letter and digit), and the lengths
    at the limits."""
    alphabet = "aZ0._-:[]é١"
    strings = ["".join(t) for n in range(6) for t in itertools.product(alphabet, repeat=n)]
    strings += ["a" * 128, "a" * 129, "_" + "a" * 127, "[::1]:65535", "[::1]:123456", "h:00000",
                "a--b", "a---b", "a___b", "a__b", "a.-b", "a._b", "x" * 63 + ".io:5000"]
    wrong = [(check.__name__, text) for text in strings for check, rx in GRAMMAR.items()
             if check(text) != bool(rx.match(text))]
    assert wrong == []
