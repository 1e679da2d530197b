"""push: OCI image layout → registry; copy: between registries and layouts.

Order of writes, so that a reader of the registry never sees a tag pointing at missing
content: every blob (skipped when the registry has it: HEAD; linked from another
repository when it may have it there: a cross-repository mount), then the manifests an
index lists, each by its digest, then the top manifest under the tag, last.

The layout may come from skopeo, umoci or imagetool: manifests are pushed byte for byte
with their own media type (OCI or Docker v2s2), so the digests stay the layout's.
"""
from __future__ import annotations

import os
from collections import namedtuple

from specs.image import (DOCKER_FOREIGN_LAYER_GZIP, INDEX_TYPES, OCI_INDEX, OCI_LAYER_NONDISTRIBUTABLE,
                         OCI_LAYER_NONDISTRIBUTABLE_GZIP, OCI_LAYER_NONDISTRIBUTABLE_ZSTD, OCI_MANIFEST)

from .layout import Layout, LayoutError
from .reference import parse
from .registry import Payload, RegistryError, json_object, push_scope

# Layers a registry may not be given (their descriptors carry urls): pushed only when
# the layout has them, as skopeo does.
_FOREIGN = (DOCKER_FOREIGN_LAYER_GZIP, OCI_LAYER_NONDISTRIBUTABLE, OCI_LAYER_NONDISTRIBUTABLE_GZIP,
            OCI_LAYER_NONDISTRIBUTABLE_ZSTD)

# One manifest to write: its raw bytes, media type and digest.
Doc = namedtuple("Doc", "data media_type digest")


class PushError(Exception):
    """One line naming the thing and the reason."""


class PushResult:
    def __init__(self, reference: str, digest: str):
        self.reference = reference
        self.digest = digest                  # the top manifest's, as the registry stores it
        self.sent: list[str] = []             # blobs uploaded
        self.mounted: list[str] = []          # blobs linked from another repository
        self.skipped: list[str] = []          # blobs the registry already had

    def __repr__(self) -> str:
        return (f"PushResult({self.reference}, {self.digest}, sent={len(self.sent)}, "
                f"mounted={len(self.mounted)}, skipped={len(self.skipped)})")


def push(layout_dir: str, tag: str | None, ref: str, *, creds=None, authfile: str | None = None,
         plain_http: bool = False, tls_verify: bool = True, cert_dir: str | None = None,
         chunk_size: int = 0, mount_from: str | None = None, transport=None) -> PushResult:
    """Push the image (or index) `tag` of the layout at `layout_dir` to `ref`.

    chunk_size: 0 uploads each blob in one PUT, else in PATCH requests of that many
    bytes. mount_from: a repository of the same registry to link blobs from rather than
    send them. Returns a PushResult."""
    if chunk_size < 0:
        raise PushError(f"--chunk-size {chunk_size}: must be 0 (monolithic) or more")
    reference = parse(ref)
    try:
        layout = Layout(layout_dir)
        desc = layout.resolve(tag)
        blobs, manifests = plan(layout, desc)
    except LayoutError as e:
        raise PushError(str(e)) from None
    client = _client(reference, creds, authfile, plain_http, tls_verify, cert_dir, transport)
    result = PushResult(str(reference), manifests[-1].digest)
    for d in blobs:
        _push_blob(client, reference.repository, d, lambda d=d: _layout_payload(layout, d),
                   chunk_size, mount_from, result)
    _put_manifests(client, reference, manifests)
    return result


def _client(reference, creds, authfile, plain_http, tls_verify, cert_dir, transport):
    from .puller import _credentials
    from .registry import client_for
    return client_for(reference.registry, plain_http=plain_http, tls_verify=tls_verify,
                      cert_dir=cert_dir, creds=_credentials(reference, creds, authfile),
                      transport=transport)


def plan(layout: Layout, desc: dict) -> tuple[list[dict], list[Doc]]:
    """(blob descriptors, manifests in the order they go: an index's images first, the
    top one last) for the manifest or index `desc` names in `layout`."""
    top = _doc(layout, desc)
    manifests, blobs, seen = [], [], set()
    if top.media_type in INDEX_TYPES:
        from specs import fastjson
        for child in fastjson.loads(top.data).get("manifests") or []:
            if not isinstance(child, dict) or not isinstance(child.get("digest"), str):
                raise LayoutError(f"{desc['digest']}: malformed index entry")
            doc = _doc(layout, child)
            if doc.media_type in INDEX_TYPES:
                raise LayoutError(f"{child['digest']}: nested index is not supported")
            manifests.append(doc)
    else:
        manifests.append(top)
    for m in manifests:
        for d in _blobs_of(m):
            if d["digest"] in seen:
                continue
            seen.add(d["digest"])
            if d.get("mediaType") in _FOREIGN and not layout.has_blob(d["digest"]):
                continue
            blobs.append(d)
    if top is not manifests[-1]:
        manifests.append(top)
    return blobs, manifests


def _doc(layout: Layout, desc: dict) -> Doc:
    data = layout.read_blob(desc["digest"], desc.get("size"))
    parsed = json_object(data, f"{desc['digest']}: malformed manifest or index", LayoutError)
    media_type = parsed.get("mediaType") or desc.get("mediaType") or (
        OCI_INDEX if "manifests" in parsed else OCI_MANIFEST)
    return Doc(data, media_type, desc["digest"])


def _blobs_of(m: Doc) -> list[dict]:
    from specs import fastjson
    doc = fastjson.loads(m.data)
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise LayoutError(f"{m.digest}: not an image manifest (no config or layers)")
    out = []
    for d in [config, *layers]:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str) \
                or type(d.get("size")) is not int or d["size"] < 0:
            raise LayoutError(f"{m.digest}: malformed descriptor {d!r:.120}")
        out.append(d)
    return out


class _LayoutPayload(Payload):
    def __init__(self, f, size: int):
        super().__init__(f, 0, size)

    def close(self) -> None:
        self.f.close()


def _layout_payload(layout: Layout, d: dict) -> _LayoutPayload:
    return _LayoutPayload(layout.open_blob(d["digest"]), d["size"])


def _push_blob(client, repository: str, d: dict, open_payload, chunk_size: int,
               mount_from: str | None, result: PushResult) -> None:
    digest = d["digest"]
    # The push's own scope from the first request on: one token does it all.
    if client.blob_exists(repository, digest, push_scope(repository)):
        result.skipped.append(digest)
        return
    location = None
    if mount_from and mount_from != repository:
        location = client.mount_blob(repository, digest, mount_from)
        if location is None:
            result.mounted.append(digest)
            return
    payload = open_payload()
    try:
        client.upload_blob(repository, d, payload, chunk_size, location)
    except RegistryError as e:
        if "DIGEST_INVALID" in str(e) or "digest did not match" in str(e).lower():
            raise PushError(f"{digest}: the blob does not match its digest (the registry "
                            "refused it)") from None
        raise
    finally:
        payload.close()
    result.sent.append(digest)


def _put_manifests(client, reference, manifests: list[Doc]) -> None:
    repository = reference.repository
    for m in manifests[:-1]:
        client.put_manifest(repository, m.digest, m.data, m.media_type, m.digest)
    top = manifests[-1]
    if reference.digest and reference.digest != top.digest:
        raise PushError(f"{reference}: the image's digest is {top.digest}")
    client.put_manifest(repository, reference.tag or top.digest, top.data, top.media_type, top.digest)


# -- copy ---------------------------------------------------------------------------------

def parse_location(text: str) -> tuple[str, str, str | None]:
    """skopeo's transports: docker://REF → ("docker", REF, None); oci:PATH[:TAG] →
    ("oci", PATH, TAG)."""
    if text.startswith("docker://"):
        return "docker", text[len("docker://"):], None
    if text.startswith("oci:"):
        from .cliargs import split_layout_ref
        path, tag = split_layout_ref(text[len("oci:"):])
        return "oci", path, tag
    raise PushError(f"{text}: expected docker://REFERENCE or oci:LAYOUT[:TAG]")


def copy(src: str, dst: str, *, src_creds=None, dest_creds=None, authfile: str | None = None,
         src_tls_verify: bool = True, dest_tls_verify: bool = True,
         src_cert_dir: str | None = None, dest_cert_dir: str | None = None,
         plain_http: bool = False, platform: str | None = None, format: str | None = None,
         chunk_size: int = 0) -> str:
    """Copy an image between registries and layouts (skopeo's transports docker:// and
    oci:). Returns the digest of what was written."""
    skind, spath, stag = parse_location(src)
    dkind, dpath, dtag = parse_location(dst)
    if skind == "docker" and dkind == "oci":
        from .puller import pull
        ref = parse(spath)
        result = pull(spath, dpath, platform=platform, creds=src_creds, authfile=authfile,
                      plain_http=plain_http, tls_verify=src_tls_verify, cert_dir=src_cert_dir,
                      progress=False, format=format or "oci", tag=dtag or ref.tag)
        return result.descriptor["digest"]
    if skind == "oci" and dkind == "docker":
        return push(spath, stag, dpath, creds=dest_creds, authfile=authfile, plain_http=plain_http,
                    tls_verify=dest_tls_verify, cert_dir=dest_cert_dir, chunk_size=chunk_size).digest
    if skind == "docker" and dkind == "docker":
        return _copy_registry(spath, dpath, src_creds, dest_creds, authfile, plain_http,
                              (src_tls_verify, src_cert_dir), (dest_tls_verify, dest_cert_dir),
                              platform, chunk_size)
    return _copy_layout(spath, stag, dpath, dtag)


def _copy_registry(src: str, dst: str, src_creds, dest_creds, authfile, plain_http,
                   src_tls, dest_tls, platform, chunk_size) -> str:
    """Registry to registry, manifests byte for byte: a blob the destination has is
    skipped, one on the same registry is mounted, any other goes through a temporary
    file (downloaded, verified, uploaded)."""
    import tempfile
    from .puller import host_platform, parse_platform, pick_platform
    sref, dref = parse(src), parse(dst)
    sclient = _client(sref, src_creds, authfile, plain_http, src_tls[0], src_tls[1], None)
    dclient = _client(dref, dest_creds, authfile, plain_http, dest_tls[0], dest_tls[1], None)
    what = str(sref)
    top = sclient.get_manifest(sref.repository, sref.ref, what)
    manifest = top
    if top.is_index:  # skopeo's default: the image for this platform (or --platform's)
        want = parse_platform(platform) if platform else host_platform()
        chosen = pick_platform(top.doc, want, what)
        manifest = sclient.get_manifest(sref.repository, chosen["digest"], what, size=chosen["size"])
        if manifest.is_index:
            raise PushError(f"{what}: {chosen['digest']}: nested index is not supported")
    doc = Doc(manifest.data, manifest.media_type, manifest.digest)
    result = PushResult(str(dref), doc.digest)
    same = sref.registry == dref.registry
    with tempfile.TemporaryDirectory(prefix="imagetool-copy-") as scratch:
        for d in _blobs_of(doc):
            def fetch(d=d):
                partial = os.path.join(scratch, d["digest"].replace(":", "-"))
                sclient.fetch_blob(sref.repository, d, partial)
                return _LayoutPayload(open(partial, "rb"), d["size"])
            _push_blob(dclient, dref.repository, d, fetch, chunk_size,
                       sref.repository if same else None, result)
    _put_manifests(dclient, dref, [doc])
    return doc.digest


def _copy_layout(spath: str, stag: str | None, dpath: str, dtag: str | None) -> str:
    """Layout to layout: the blobs (verified as they are read), then the tag."""
    try:
        src = Layout(spath)
        desc = src.resolve(stag)
        blobs, manifests = plan(src, desc)
        dst = Layout.create(dpath)
        for d in blobs:
            if not dst.has_blob(d["digest"], d["size"]):
                _copy_blob(src, dst, d)
        for m in manifests:
            dst.write_blob(m.digest, m.data)
        tag = dtag or stag or (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
        dst.set_tag(tag, {k: v for k, v in desc.items() if k != "annotations"})
    except LayoutError as e:
        raise PushError(str(e)) from None
    return desc["digest"]


def _copy_blob(src: Layout, dst: Layout, d: dict) -> None:
    """Stream one blob between layouts, its size and digest checked before it lands."""
    from .layout import _hasher, split_digest
    alg, hexpart = split_digest(d["digest"])
    h = _hasher(alg, d["size"])
    partial = dst.partial_path(d["digest"])
    os.makedirs(os.path.dirname(partial), exist_ok=True)
    payload = _layout_payload(src, d)
    try:
        with open(partial, "wb") as out:
            while chunk := payload.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        longer = payload.f.read(1)
    finally:
        payload.close()
    if payload.pos != d["size"] or longer or h.hexdigest() != hexpart:
        os.unlink(partial)
        raise LayoutError(f"{d['digest']}: blob in layout {src.path} does not match its "
                          "descriptor (size or digest)")
    dst.commit_partial(d["digest"])
    dst.cleanup_partials()
