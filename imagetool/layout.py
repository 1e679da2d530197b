"""OCI image layout store: oci-layout, index.json, blobs/<alg>/<hex>.

Tags are the image spec's `org.opencontainers.image.ref.name` annotation on
index.json's descriptors, which is what skopeo and umoci read and write.

API used by unpack/bundle (keep these names stable):
    Layout(path)                 open an existing layout (LayoutError if it is not one)
    .resolve(tag) -> dict        manifest descriptor for a tag (None: the only one, or "latest")
    .read_json(digest, size) -> dict   a small JSON blob, verified against its digest and size
    .open_blob(digest)           binary file object, streaming (a regular file; the
                                 reader bounds what it reads by the descriptor's size)
    .blob_path(digest) -> str
"""
from __future__ import annotations

import os

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# Manifests and configs are small; a bigger "JSON" blob is hostile or broken.
MAX_JSON_BLOB = 4 * 1024 * 1024
# Where interrupted downloads wait to be resumed: outside blobs/ so that a
# reader walking blobs/ never meets a half-written file.
PARTIAL_DIR = ".imagetool-partial"


class LayoutError(Exception):
    """A one-line, user-facing error about a layout."""


def split_digest(digest: str) -> tuple[str, str]:
    alg, sep, hexpart = digest.partition(":")
    if not sep or alg not in ("sha256", "sha512") or not hexpart:
        raise LayoutError(f"{digest}: not a supported digest")
    width = 64 if alg == "sha256" else 128
    if len(hexpart) != width or any(c not in "0123456789abcdef" for c in hexpart):
        raise LayoutError(f"{digest}: malformed digest")
    return alg, hexpart


BIG = 1 << 20  # bytes from which OpenSSL's hashing repays its import


def _hasher(alg: str, size: int = 0):
    """A sha256/sha512 hasher for about `size` bytes. Small data (manifests, configs,
    small layers) uses the interpreter's own modules, since hashlib loads OpenSSL
    (~3-4 ms, a good part of a small image's whole pull); big blobs use OpenSSL,
    several times faster per byte."""
    if size < BIG and alg in ("sha256", "sha512"):
        if alg == "sha256":
            from _sha256 import sha256
            return sha256()
        from _sha512 import sha512
        return sha512()
    import hashlib
    return hashlib.new(alg)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary name, fsync, rename: readers see the old or the new file.
    `mode` applies from creation (secrets are never readable, not even for a moment)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(os.path.dirname(path) or ".")


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path: str):
        self.path = path
        marker = os.path.join(path, "oci-layout")
        if not os.path.isdir(path):
            raise LayoutError(f"{path}: no such layout directory")
        if not os.path.isfile(marker) or not os.path.isfile(self._index_path):
            raise LayoutError(f"{path}: not an OCI image layout (oci-layout or index.json missing)")

    @classmethod
    def create(cls, path: str) -> "Layout":
        """Open `path` as a layout, making an empty one if it does not exist yet."""
        if os.path.exists(path) and not os.path.isdir(path):
            raise LayoutError(f"{path}: exists and is not a directory")
        marker = os.path.join(path, "oci-layout")
        index = os.path.join(path, "index.json")
        fresh = not os.path.exists(marker)
        if fresh and os.path.isdir(path) and _has_entries(path, ignore=set()):
            raise LayoutError(f"{path}: directory is not empty and not an OCI image layout")
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        if fresh:
            _write_atomic(marker, b'{"imageLayoutVersion":"%s"}' % LAYOUT_VERSION.encode())
        if not os.path.exists(index):
            _write_atomic(index, _dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
                                         "manifests": []}))
        return cls(path)

    # -- index.json and tags ------------------------------------------------

    @property
    def _index_path(self) -> str:
        return os.path.join(self.path, "index.json")

    def index(self) -> dict:
        from specs import fastjson
        try:
            with _open_regular(self._index_path, self._index_path) as f:
                data = f.read(MAX_JSON_BLOB + 1)
            if len(data) > MAX_JSON_BLOB:
                raise LayoutError(f"{self._index_path}: larger than {MAX_JSON_BLOB} bytes")
            index = fastjson.loads(data)
        except ValueError as e:
            raise LayoutError(f"{self._index_path}: malformed JSON: {e}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise LayoutError(f"{self._index_path}: not an image index")
        index.setdefault("manifests", [])
        return index

    def tags(self) -> list[tuple[str | None, dict]]:
        """(tag or None, descriptor) for every manifest index.json lists."""
        out = []
        for desc in self.index()["manifests"]:
            out.append(((desc.get("annotations") or {}).get(REF_NAME), desc))
        return out

    def resolve(self, tag: str | None) -> dict:
        """The descriptor `tag` names. None means the only manifest, else "latest".

        A digest ("sha256:…") is accepted too and matches the descriptor's digest.
        """
        entries = self.tags()
        if tag is None:
            if len(entries) == 1:
                return entries[0][1]
            if not entries:
                raise LayoutError(f"{self.path}: layout holds no images")
            tag = "latest"
        if ":" in tag and tag.split(":", 1)[0] in ("sha256", "sha512"):
            found = [d for _, d in entries if d.get("digest") == tag]
        else:
            found = [d for name, d in entries if name == tag]
        if not found:
            raise LayoutError(f"{self.path}:{tag}: no such tag in layout")
        if len(found) > 1:
            raise LayoutError(f"{self.path}:{tag}: tag names {len(found)} manifests")
        return found[0]

    def set_tag(self, tag: str | None, descriptor: dict) -> None:
        """Point `tag` at `descriptor`, atomically (temp file + rename, under a lock)."""
        desc = dict(descriptor)
        if tag is not None:
            desc["annotations"] = {**(desc.get("annotations") or {}), REF_NAME: tag}
        with self._locked():
            index = self.index()
            keep = []
            for d in index["manifests"]:
                name = (d.get("annotations") or {}).get(REF_NAME)
                if tag is not None and name == tag:
                    continue
                if tag is None and name is None and d.get("digest") == desc["digest"]:
                    continue
                keep.append(d)
            index["manifests"] = keep + [desc]
            _write_atomic(self._index_path, _dumps(index))

    def _locked(self):
        return _DirLock(self.path)

    # -- blobs ----------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        alg, hexpart = split_digest(digest)
        return os.path.join(self.path, "blobs", alg, hexpart)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def open_blob(self, digest: str):
        """The blob's file, which must be a regular one (a FIFO would block, a device
        never end). Readers stop at the size the descriptor declares."""
        try:
            return _open_regular(self.blob_path(digest), f"{digest}: blob in layout {self.path}")
        except FileNotFoundError:
            raise LayoutError(f"{digest}: blob missing from layout {self.path}") from None

    def read_blob(self, digest: str, size: int | None = None, limit: int = MAX_JSON_BLOB) -> bytes:
        """A whole (small) blob, verified against its digest and, when the descriptor
        gives one, its size: never more than that is read (umoci stops there too)."""
        alg, hexpart = split_digest(digest)
        if size is not None:
            if type(size) is not int or size < 0:
                raise LayoutError(f"{digest}: descriptor has no valid size")
            if size > limit:
                raise LayoutError(f"{digest}: descriptor says {size} bytes, more than the "
                                  f"{limit} a manifest or config may have")
        with self.open_blob(digest) as f:
            data = f.read((limit if size is None else size) + 1)
        if size is not None and len(data) != size:
            how = "longer than" if len(data) > size else f"{len(data)} bytes, not"
            raise LayoutError(f"{digest}: blob is {how} the {size} bytes its descriptor declares")
        if len(data) > limit:
            raise LayoutError(f"{digest}: blob larger than {limit} bytes")
        h = _hasher(alg)
        h.update(data)
        if h.hexdigest() != hexpart:
            raise LayoutError(f"{digest}: blob content does not match its digest")
        return data

    def read_json(self, digest: str, size: int | None = None) -> dict:
        from specs import fastjson
        try:
            value = fastjson.loads(self.read_blob(digest, size))
        except ValueError as e:
            raise LayoutError(f"{digest}: malformed JSON: {e}") from None
        if not isinstance(value, dict):
            raise LayoutError(f"{digest}: JSON blob is not an object")
        return value

    def write_blob(self, digest: str, data: bytes) -> bool:
        """Store `data` under `digest` after checking it. False if it was already there."""
        alg, hexpart = split_digest(digest)
        h = _hasher(alg)
        h.update(data)
        if h.hexdigest() != hexpart:
            raise LayoutError(f"{digest}: content does not match its digest")
        path = self.blob_path(digest)
        if os.path.exists(path):
            return False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_atomic(path, data)
        return True

    def partial_path(self, digest: str) -> str:
        """Where a download of `digest` in progress lives (kept for HTTP Range resume)."""
        alg, hexpart = split_digest(digest)
        return os.path.join(self.path, PARTIAL_DIR, f"{alg}-{hexpart}")

    def commit_partial(self, digest: str) -> None:
        """Move a verified download into blobs/ (the caller checked the digest)."""
        path = self.blob_path(digest)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.rename(self.partial_path(digest), path)

    def remove_blob(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            pass

    def cleanup_partials(self) -> None:
        """Drop the partial-download dir if nothing waits in it any more."""
        try:
            os.rmdir(os.path.join(self.path, PARTIAL_DIR))
        except OSError:
            pass


def _open_regular(path: str, what: str):
    """open(path, "rb"), refusing anything but a regular file before a read can block
    (O_NONBLOCK: a FIFO opens at once, and regular files ignore the flag)."""
    import stat
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise LayoutError(f"{what}: not a regular file")
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _DirLock:
    """flock on the layout directory itself: serialises index.json writers
    without leaving a lock file inside the layout."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self):
        import fcntl
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing drops the flock


def _has_entries(path: str, ignore: set[str]) -> bool:
    return any(name not in ignore for name in os.listdir(path))


def _dumps(value: dict) -> bytes:
    from specs import fastjson
    return fastjson.dumps(value, separators=(",", ":")).encode()
