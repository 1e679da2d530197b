"""Test images built in pure Python (tarfile + hashlib), written as OCI layouts
or pushed to a registry over the distribution HTTP API.

Test support only: the product never pushes.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import tarfile
import urllib.parse
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "echo", "true", "false", "cat", "ls", "id", "hostname", "sleep", "env",
           "pwd", "mkdir", "rm", "touch", "stat", "readlink", "ps", "whoami", "grep",
           "test", "wc", "head", "uname", "kill"]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, **extra) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass
class Image:
    """One image manifest with its config and layers."""
    manifest: Blob
    config: Blob
    layers: list[Blob]
    platform: dict | None = None

    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    def descriptor(self) -> dict:
        extra = {"platform": self.platform} if self.platform else {}
        return self.manifest.descriptor(**extra)


@dataclass
class Index:
    """An image index (or Docker manifest list) over several images."""
    manifest: Blob
    images: list[Image] = field(default_factory=list)

    def descriptor(self) -> dict:
        return self.manifest.descriptor()


# -- layers -------------------------------------------------------------------

@dataclass
class Entry:
    """One tar entry: kind is file, dir, symlink, hardlink, or fifo."""
    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000


_KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}


def tar_layer(entries: list[Entry]) -> bytes:
    """An uncompressed layer tar (PAX format, as modern builders write)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.type = _KINDS[e.kind]
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.mtime = e.mtime
            info.linkname = e.linkname
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def busybox_entries() -> list[Entry]:
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    entries = [Entry(d, "dir", mode=0o755) for d in ("bin", "etc", "root", "home", "usr",
                                                     "usr/bin", "var", "proc", "sys", "dev")]
    entries.append(Entry("tmp", "dir", mode=0o1777))
    entries.append(Entry("bin/busybox", data=busybox, mode=0o755))
    entries += [Entry(f"bin/{a}", "symlink", linkname="busybox", mode=0o777) for a in APPLETS]
    entries.append(Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                                            b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                                            b"nobody:x:65534:65534:nobody:/home:/bin/false\n"))
    entries.append(Entry("etc/group", data=b"root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"))
    return entries


# -- images -------------------------------------------------------------------

def build_image(layer_tars: list[bytes], *, cmd: list[str] | None = None,
                entrypoint: list[str] | None = None, env: list[str] | None = None,
                workdir: str = "", user: str = "", labels: dict | None = None,
                os_name: str = "linux", arch: str = "amd64", variant: str | None = None,
                docker: bool = False, compress: bool = True, compression: str | list[str] | None = None,
                annotations: dict | None = None) -> Image:
    """An image from uncompressed layer tars; docker=True makes a Docker v2s2 one.

    compression: "gzip" (the default), "zstd", "zstd-frames" (each layer as two
    concatenated zstd frames, as parallel writers make) or "none"; or a list, one per layer."""
    if compression is None:
        compression = "gzip" if (compress or docker) else "none"
    kinds = compression if isinstance(compression, list) else [compression] * len(layer_tars)
    layers = [compress_layer(t, kind, docker) for t, kind in zip(layer_tars, kinds)]
    config: dict = {"Env": env if env is not None else [PATH_ENV]}
    if cmd is not None:
        config["Cmd"] = cmd
    if entrypoint is not None:
        config["Entrypoint"] = entrypoint
    if workdir:
        config["WorkingDir"] = workdir
    if user:
        config["User"] = user
    if labels:
        config["Labels"] = labels
    platform = {"architecture": arch, "os": os_name, **({"variant": variant} if variant else {})}
    config_doc = {"created": "2024-01-01T00:00:00Z", **platform, "config": config,
                  "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in layer_tars]},
                  "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests/support/images.py"}
                              for _ in layer_tars]}
    config_blob = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, _dumps(config_doc))
    manifest = {"schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
                "config": config_blob.descriptor(),
                "layers": [l.descriptor() for l in layers]}
    if annotations:
        manifest["annotations"] = annotations
    return Image(Blob(manifest["mediaType"], _dumps(manifest)), config_blob, layers, platform)


def compress_layer(tar: bytes, compression: str, docker: bool = False) -> Blob:
    if compression == "gzip":
        return Blob(DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, gzip.compress(tar, mtime=0))
    if docker:
        raise ValueError(f"Docker v2s2 has no {compression} layers")
    if compression == "none":
        return Blob(OCI_LAYER_TAR, tar)
    import zstandard
    if compression == "zstd":
        return Blob(OCI_LAYER_ZSTD, zstandard.ZstdCompressor(level=3, write_checksum=True).compress(tar))
    if compression == "zstd-frames":
        half = len(tar) // 2
        frames = b"".join(zstandard.ZstdCompressor(level=3).compress(part)
                          for part in (tar[:half], tar[half:]))
        return Blob(OCI_LAYER_ZSTD, frames)
    raise ValueError(f"unknown compression {compression!r}")


def busybox_image(cmd: list[str] | None = None, **kw) -> Image:
    return build_image([tar_layer(busybox_entries())], cmd=cmd or ["sh"], **kw)


def build_index(images: list[Image], *, docker: bool = False) -> Index:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX,
           "manifests": [i.descriptor() for i in images]}
    return Index(Blob(doc["mediaType"], _dumps(doc)), list(images))


def two_platform_index() -> Index:
    """amd64 and arm64 images that differ in a marker file (/arch)."""
    images = [build_image([tar_layer([Entry("arch", data=arch.encode() + b"\n")])],
                          cmd=["cat", "/arch"], arch=arch, variant=variant)
              for arch, variant in (("amd64", None), ("arm64", "v8"))]
    return build_index(images)


# -- layouts ------------------------------------------------------------------

def write_layout(path: str, tagged: dict[str, Image | Index]) -> None:
    """An OCI layout holding `tagged` (tag → image/index), as a builder would write it."""
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for tag, item in tagged.items():
        for blob in _all_blobs(item):
            with open(os.path.join(path, "blobs", "sha256", blob.digest.split(":")[1]), "wb") as f:
                f.write(blob.data)
        desc = item.descriptor()
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        manifests.append(desc)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, f)


def _all_blobs(item: Image | Index) -> list[Blob]:
    if isinstance(item, Index):
        out = [item.manifest]
        for image in item.images:
            out += _all_blobs(image)
        return out
    return [*item.blobs(), item.manifest]


# -- push ---------------------------------------------------------------------

def push(registry: str, repo: str, tag: str, item: Image | Index,
         auth: tuple[str, str] | None = None, bearer: str | None = None,
         tls_context=None) -> str:
    """Push an image or index to `registry` (host:port, plain HTTP; HTTPS with an
    ssl.SSLContext in tls_context). Returns the manifest digest.
    auth: basic credentials; bearer: a token with push access to `repo`."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    if auth:
        import base64
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    if tls_context is not None:
        conn = http.client.HTTPSConnection(registry, timeout=30, context=tls_context)
    else:
        conn = http.client.HTTPConnection(registry, timeout=30)
    try:
        if isinstance(item, Index):
            for image in item.images:
                push_image(conn, headers, repo, image.manifest.digest, image)
            _put_manifest(conn, headers, repo, tag, item.manifest)
        else:
            push_image(conn, headers, repo, tag, item)
    finally:
        conn.close()
    return item.manifest.digest


def push_image(conn, headers: dict, repo: str, ref: str, image: Image) -> None:
    for blob in image.blobs():
        _push_blob(conn, headers, repo, blob)
    _put_manifest(conn, headers, repo, ref, image.manifest)


def _push_blob(conn, headers: dict, repo: str, blob: Blob) -> None:
    status, _, _ = _request(conn, "HEAD", f"/v2/{repo}/blobs/{blob.digest}", headers)
    if status == 200:
        return
    status, resp_headers, body = _request(conn, "POST", f"/v2/{repo}/blobs/uploads/", headers)
    if status != 202:
        raise RuntimeError(f"push {repo}: start upload: HTTP {status}: {body[:200]!r}")
    location = urllib.parse.urlsplit(resp_headers["Location"])
    query = (location.query + "&" if location.query else "") + "digest=" + blob.digest
    status, _, body = _request(conn, "PUT", f"{location.path}?{query}",
                               {**headers, "Content-Type": "application/octet-stream"}, blob.data)
    if status != 201:
        raise RuntimeError(f"push {repo}: blob {blob.digest}: HTTP {status}: {body[:200]!r}")


def _put_manifest(conn, headers: dict, repo: str, ref: str, manifest: Blob) -> None:
    status, _, body = _request(conn, "PUT", f"/v2/{repo}/manifests/{ref}",
                               {**headers, "Content-Type": manifest.media_type}, manifest.data)
    if status != 201:
        raise RuntimeError(f"push {repo}:{ref}: manifest: HTTP {status}: {body[:300]!r}")


def _request(conn, method: str, path: str, headers: dict, body: bytes | None = None):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k: v for k, v in resp.getheaders()}, data


def _dumps(value: dict) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
