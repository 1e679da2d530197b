"""Image references as docker and skopeo read them, normalised.

    busybox                      → docker.io/library/busybox:latest
    docker.io/library/busybox:1.36
    host:port/ns/repo@sha256:…   (a tag and a digest may both be given; the digest wins)
"""
from __future__ import annotations

from collections import namedtuple

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The key Docker's config.json keeps Hub credentials under.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

# The distribution grammar (reference.go), checked by hand: `re` (with enum) is ~3 ms of a
# pull of a small image that is ~40 ms in all. tests/imagetool/test_reference.py holds
# the grammar as regular expressions and compares these checks with them.
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TAG_CHARS = _ALNUM | frozenset("_.-")
_HEX_COLON_DOT = frozenset("0123456789abcdefABCDEF:.")
_DIGITS = frozenset("0123456789")
_DIGEST_HEX = {"sha256": 64, "sha512": 128}
MAX_NAME = 255


class ReferenceError(ValueError):
    """A reference that cannot be parsed; the message is one line naming it."""


# A namedtuple, not a dataclass: dataclasses pulls in inspect (~10 ms) on the pull path.
class Reference(namedtuple("Reference", "registry repository tag digest")):
    """registry ("docker.io", "127.0.0.1:5000"), repository ("library/busybox"),
    tag (None only when a digest is given), digest."""
    __slots__ = ()

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def ref(self) -> str:
        """What to ask the registry's manifests endpoint for."""
        return self.digest or self.tag  # type: ignore[return-value]

    @property
    def is_local(self) -> bool:
        return is_local_host(self.registry)

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def is_local_host(registry: str) -> bool:
    """localhost and 127.0.0.0/8 (and ::1): where plain HTTP is the default."""
    host = registry
    if host.startswith("["):
        host = host[1:host.index("]")] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host == "localhost" or host == "::1":
        return True
    parts = host.split(".")
    return (len(parts) == 4 and parts[0] == "127"
            and all(p.isdigit() and int(p) < 256 for p in parts))


def parse(text: str) -> Reference:
    """Parse and normalise `text`, raising ReferenceError with one line on any fault."""
    if not text:
        raise ReferenceError("empty image reference")
    if text.startswith("docker://"):  # skopeo's transport prefix
        text = text[len("docker://"):]
    if any(c.isspace() for c in text):
        raise ReferenceError(f"{text!r}: invalid reference: contains whitespace")

    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(text, digest)

    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not is_tag(tag):
            raise ReferenceError(f"{text}: invalid tag {tag!r}")

    registry, path = _split_domain(text, rest)
    if not path:
        raise ReferenceError(f"{text}: invalid reference: no repository name")
    for component in path.split("/"):
        if not is_component(component):
            why = "must be lowercase" if component.lower() != component else "has invalid characters"
            raise ReferenceError(f"{text}: invalid repository name component {component!r}: {why}")
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise ReferenceError(f"{text}: repository name longer than {MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def is_component(text: str) -> bool:
    r"""[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*: runs of lowercase letters and digits, each
    two joined by one '.', one '_', '__' or any number of '-'."""
    i, n, alnum = 0, len(text), True  # alnum: the run that starts at i must be letters/digits
    while i < n:
        j = i
        if alnum:
            while j < n and text[j] in _LOWER_ALNUM:
                j += 1
        else:
            while j < n and text[j] in "._-":
                j += 1
            sep = text[i:j]
            if sep not in (".", "_", "__") and sep.strip("-"):
                return False
        if j == i:
            return False
        i, alnum = j, not alnum
    return n > 0 and not alnum  # it ended with letters or digits


def is_tag(text: str) -> bool:
    """[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"""
    return (0 < len(text) <= 128 and (text[0] in _ALNUM or text[0] == "_")
            and all(c in _TAG_CHARS for c in text))


def _is_label(text: str) -> bool:
    """[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"""
    return (bool(text) and text[0] in _ALNUM and text[-1] in _ALNUM
            and all(c in _ALNUM or c == "-" for c in text))


def _is_port(text: str) -> bool:
    return 1 <= len(text) <= 5 and all(c in _DIGITS for c in text)


def is_host(text: str) -> bool:
    r"""(\[[0-9a-fA-F:.]+\]|LABEL(\.LABEL)*)(:[0-9]{1,5})?"""
    if text.startswith("["):
        end = text.find("]")
        if end < 2 or not all(c in _HEX_COLON_DOT for c in text[1:end]):
            return False
        rest = text[end + 1:]
        return not rest or (rest[0] == ":" and _is_port(rest[1:]))
    name, colon, port = text.partition(":")
    return (not colon or _is_port(port)) and all(_is_label(label) for label in name.split("."))


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    # docker's rule: the first component is a registry if it looks like a host.
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not is_host(first):
            raise ReferenceError(f"{text}: invalid registry host {first!r}")
        if first in ("index.docker.io", "registry-1.docker.io"):
            first = DOCKER_HUB
        return first, remainder
    return DOCKER_HUB, name


def _check_digest(text: str, digest: str) -> None:
    alg, sep, hexpart = digest.partition(":")
    if not sep or alg not in _DIGEST_HEX:
        raise ReferenceError(f"{text}: unsupported digest {digest!r} (sha256 or sha512 expected)")
    if len(hexpart) != _DIGEST_HEX[alg] or not all(c in "0123456789abcdef" for c in hexpart):
        raise ReferenceError(f"{text}: malformed digest {digest!r}")
