"""Image references as docker and skopeo read them, normalised.

    busybox                      → docker.io/library/busybox:latest
    docker.io/library/busybox:1.36
    host:port/ns/repo@sha256:…   (a tag and a digest may both be given; the digest wins)
"""
from __future__ import annotations

import re
from collections import namedtuple

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The key Docker's config.json keeps Hub credentials under.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_HOST = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?\Z")
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
        if not _TAG.match(tag):
            raise ReferenceError(f"{text}: invalid tag {tag!r}")

    registry, path = _split_domain(text, rest)
    if not path:
        raise ReferenceError(f"{text}: invalid reference: no repository name")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            why = "must be lowercase" if component.lower() != component else "has invalid characters"
            raise ReferenceError(f"{text}: invalid repository name component {component!r}: {why}")
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if len(registry) + 1 + len(path) > MAX_NAME:
        raise ReferenceError(f"{text}: repository name longer than {MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    # docker's rule: the first component is a registry if it looks like a host.
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST.match(first):
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
