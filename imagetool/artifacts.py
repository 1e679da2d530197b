"""OCI artifacts (image-spec 1.1): files pushed as the layers of a manifest with an
artifactType, optionally attached to an image (its `subject`), and the referrers of an
image listed: the signatures, SBOMs and other artifacts attached to it.

Registries without the referrers API (docker-registry 2.8 has none) get the
distribution spec's fallback: an index tagged `<alg>-<hex>` of the subject's digest,
which the client that attaches an artifact keeps up to date, and which readers list.

Why not oras-py here, the registry library the project carries: measured on 0.2.43,
its Subject.from_manifest() hashes a re-serialised manifest (the subject digest names
no manifest the registry has), downloads are not checked against their digest, a
directory artifact is extracted with tarfile after a lexical check only (a symlink
member then a file through it leaves the directory), and it has neither client
certificates nor certs.d. The tests use oras-py as the other implementation: what it
pushes we pull, what we push it reads.
"""
from __future__ import annotations

import os

from specs.image import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST

from .reference import parse
from .registry import Payload, RegistryError, push_scope

TITLE = "org.opencontainers.image.title"
EMPTY_CONFIG = b"{}"
DEFAULT_FILE_TYPE = "application/octet-stream"


class ArtifactError(Exception):
    """One line naming the thing and the reason."""


def _client(reference, **opts):
    from .remote import _client as client
    return client(reference, **opts)


def _sha256_file(path: str) -> tuple[str, int]:
    import hashlib
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _digest(data: bytes) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _dumps(doc: dict) -> bytes:
    from specs import fastjson
    return fastjson.dumps(doc, separators=(",", ":")).encode()


def push_artifact(ref: str, files: list[tuple[str, str | None]], *, artifact_type: str,
                  subject: str | None = None, annotations: dict | None = None, **opts) -> str:
    """Push `files` ([(path, media type or None)]) as an artifact of `artifact_type` to
    `ref` (untagged when `ref` names no tag); with `subject` (a tag or digest in the
    same repository), attached to that image. Returns the artifact manifest's digest."""
    reference = parse(ref)
    if not artifact_type:
        raise ArtifactError("an artifact needs an artifact type (--artifact-type)")
    layers = []
    for path, media_type in files:
        if not os.path.isfile(path):
            raise ArtifactError(f"{path}: not a regular file")
        name = os.path.basename(path)
        _check_title(name)
        digest, size = _sha256_file(path)
        layers.append(({"mediaType": media_type or DEFAULT_FILE_TYPE, "digest": digest,
                        "size": size, "annotations": {TITLE: name}}, path))
    client = _client(reference, **opts)
    repo = reference.repository
    subject_desc = None
    if subject:
        subject_desc = client.get_manifest(repo, subject, f"{reference.name}:{subject}").descriptor()
    config = {"mediaType": OCI_EMPTY, "digest": _digest(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)}
    scope = push_scope(repo)
    if not client.blob_exists(repo, config["digest"], scope):
        client.upload_blob(repo, config, _empty_config_payload())
    for desc, path in layers:
        if client.blob_exists(repo, desc["digest"], scope):
            continue
        with open(path, "rb") as f:
            client.upload_blob(repo, desc, Payload(f, 0, desc["size"]))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": config, "layers": [d for d, _ in layers]}
    if subject_desc:
        manifest["subject"] = subject_desc
    if annotations:
        manifest["annotations"] = dict(annotations)
    data = _dumps(manifest)
    digest = _digest(data)
    # No tag given: by digest alone (an attached artifact is found through its subject,
    # and a default "latest" would move the image's own tag onto it).
    tag = reference.tag if _names_a_tag(ref) else None
    client.put_manifest(repo, tag or digest, data, OCI_MANIFEST, digest)
    if subject_desc and not client.has_referrers_api(repo, subject_desc["digest"]):
        _add_to_fallback_index(client, repo, subject_desc["digest"],
                               {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data),
                                "artifactType": artifact_type,
                                **({"annotations": dict(annotations)} if annotations else {})})
    return digest


def _names_a_tag(ref: str) -> bool:
    name = ref.split("@", 1)[0]
    return ":" in name.rpartition("/")[2]


def _empty_config_payload() -> Payload:
    import io
    return Payload(io.BytesIO(EMPTY_CONFIG), 0, len(EMPTY_CONFIG))


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: <alg>-<hex> of the subject's digest."""
    alg, _, hexpart = digest.partition(":")
    return f"{alg}-{hexpart}"


def _add_to_fallback_index(client, repo: str, subject: str, desc: dict) -> None:
    """Read the subject's referrers index (none yet: an empty one), add `desc`, push it
    back under the fallback tag (as the distribution spec asks of clients)."""
    tag = fallback_tag(subject)
    manifests = [d for d in _fallback_list(client, repo, subject) if d.get("digest") != desc["digest"]]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests + [desc]}
    data = _dumps(index)
    client.put_manifest(repo, tag, data, OCI_INDEX, _digest(data))


def _fallback_list(client, repo: str, subject: str) -> list[dict]:
    tag = fallback_tag(subject)
    try:
        index = client.get_manifest(repo, tag, f"{repo}:{tag}")
    except RegistryError as e:
        if "manifest unknown" in str(e):
            return []
        raise
    if not index.is_index:
        raise ArtifactError(f"{repo}:{tag}: the referrers tag holds a manifest, not an index")
    return list(index.doc.get("manifests") or [])


def referrers(ref: str, *, artifact_type: str | None = None, **opts) -> list[dict]:
    """The descriptors of the artifacts attached to the image `ref` names: the
    referrers API when the registry has it, else the fallback tag's index."""
    reference = parse(ref)
    client = _client(reference, **opts)
    what = str(reference)
    top = client.get_manifest(reference.repository, reference.ref, what)
    found = client.get_referrers(reference.repository, top.digest, what)
    if found is None:
        found = _fallback_list(client, reference.repository, top.digest)
    if artifact_type:
        found = [d for d in found if d.get("artifactType") == artifact_type]
    return found


def _check_title(name: str) -> None:
    """A file name the artifact may give: one component, nothing the kernel refuses."""
    from .inroot import InRootError, check_name
    if not name or name in (".", "..") or "/" in name:
        raise ArtifactError(f"{name!r}: not a file name (one path component)")
    try:
        check_name(name, "file name")
    except InRootError as e:
        raise ArtifactError(str(e)) from None
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        raise ArtifactError(f"{name[:40]}…: file name longer than 255 bytes")


def pull_artifact(ref: str, outdir: str, **opts) -> list[str]:
    """Each layer of the artifact `ref` names, as a file of `outdir` named by its title
    (its digest when it has none): downloaded, verified, then linked in without
    replacing anything. Returns the paths written; on failure none is left."""
    reference = parse(ref)
    client = _client(reference, **opts)
    what = str(reference)
    manifest = client.get_manifest(reference.repository, reference.ref, what)
    if manifest.is_index:
        raise ArtifactError(f"{what}: an index, not an artifact manifest")
    names, plan = set(), []
    for d in manifest.doc["layers"]:
        name = (d.get("annotations") or {}).get(TITLE) or fallback_tag(d["digest"])
        if not isinstance(name, str):
            raise ArtifactError(f"{what}: {d['digest']}: title is not a string")
        _check_title(name)
        if name in names:
            raise ArtifactError(f"{what}: two layers named {name!r}")
        names.add(name)
        plan.append((d, name))
    import tempfile
    made_dir = not os.path.exists(outdir)
    os.makedirs(outdir, exist_ok=True)
    dfd = os.open(outdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    written: list[str] = []
    # An unpredictable name made with O_EXCL: nothing planted in DIR is written through.
    fd, partial = tempfile.mkstemp(prefix=".imagetool-partial-", dir=outdir)
    os.close(fd)
    try:
        for d, name in plan:
            if os.path.lexists(os.path.join(outdir, name)):
                raise ArtifactError(f"{os.path.join(outdir, name)}: exists (not replaced)")
            client.fetch_blob(reference.repository, d, partial)
            # link, not rename: fails on an existing name instead of replacing it
            os.link(os.path.basename(partial), name, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.unlink(partial)
            written.append(os.path.join(outdir, name))
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(partial)
    except BaseException:
        for path in [partial, *written]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.close(dfd)
        dfd = -1
        if made_dir:
            try:
                os.rmdir(outdir)
            except OSError:
                pass
        raise
    finally:
        if dfd >= 0:
            os.close(dfd)
    return written
