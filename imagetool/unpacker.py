"""Unpack an image from an OCI layout into a runtime bundle (rootfs/ + config.json).

Each layer is read once: the blob is hashed (its digest), decompressed, the
result hashed (the config's diff_id) and untarred in the same pass. A
mismatch is found only at the layer's end, so every failure removes the
half-made bundle; nothing is ever written outside it (see inroot.py).

Layer semantics are the image spec's (layer.md): entries replace what lower
layers had at their path (directories merge), `.wh.NAME` removes NAME from
lower layers, `.wh..wh..opq` hides all of a directory's lower content, and a
whiteout never hides what its own layer wrote (umoci's rule for badly
ordered layers). Directory metadata (owner, mode, mtime, xattrs) is applied
last, deepest first, so writing into a directory neither changes its mtime
nor needs permissions its final mode would deny.

What a later layer removes is not written in the first place (_LaterRemovals: the
upper layers' headers are read in a thread beside the first layer's unpack, and their
tars, once checked, kept for their turn); where that could show (a hardlink to it, a
path through it), the unpack starts again writing everything.
"""
from __future__ import annotations

import errno
import os
import stat

from imagetool import inroot, tarstream
from specs import image as mt

__all__ = ["unpack", "UnpackError"]

# One read of a blob: 512 KiB of gzip inflate to ~1.5 MB of tar, which the inflate thread
# hands over in a queue of 4 (_prefetch). Fewer, bigger chunks cost less Python per byte;
# the Debian bench image's unpack (10 rounds, interleaved): 256 KiB and a queue of 16
# 388 ms, 512 KiB and 4 371 ms, 128 KiB 437 ms.
_CHUNK = 1 << 19
_MAX_OUT = 1 << 22  # bound on what one decompress call may produce (gzip bombs)
_WFLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DFLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SPECIAL_BITS = 0o7000
ROOTLESS_XATTR = "user.rootlesscontainers"
_NOOP_ID = 0xFFFFFFFF

_TAR = (mt.OCI_LAYER, mt.OCI_LAYER_NONDISTRIBUTABLE, "application/vnd.docker.image.rootfs.diff.tar")
_GZIP = (mt.OCI_LAYER_GZIP, mt.OCI_LAYER_NONDISTRIBUTABLE_GZIP, mt.DOCKER_LAYER_GZIP,
         mt.DOCKER_FOREIGN_LAYER_GZIP)
_ZSTD = (mt.OCI_LAYER_ZSTD, mt.OCI_LAYER_NONDISTRIBUTABLE_ZSTD)
_INDEX_TYPES = mt.INDEX_TYPES


class UnpackError(Exception):
    """Bad input to unpack; str() is one line naming the thing and the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# -- public entry point -----------------------------------------------------------

def unpack(layout_dir: str, tag: str | None, bundle_dir: str, *, rootless: bool = False,
           uid_map: list | None = None, gid_map: list | None = None) -> None:
    """Unpack `tag` of the layout at `layout_dir` into a new bundle at `bundle_dir`.

    uid_map/gid_map are OCI LinuxIDMapping lists ({containerID, hostID, size}):
    container owners in the layers are stored as the host ids they map to, and
    the bundle gets a user namespace with those mappings. With `rootless`,
    nothing is chowned and no device node is made (umoci's convention: an empty
    file with the node's permissions stands in for it); owners other than root are recorded in the
    `user.rootlesscontainers` xattr.
    """
    uid_map = _check_map(uid_map, "uid")
    gid_map = _check_map(gid_map, "gid")
    layout, manifest, image = _load_image(layout_dir, tag)
    layers = _layer_plan(manifest, image)
    claim = _claim_bundle(bundle_dir)
    rootfs = os.path.join(bundle_dir, "rootfs")
    old_umask = os.umask(0)
    try:
        os.mkdir(rootfs, 0o700)
        # A setgid bundle parent would hand its group (and the bit) down to every
        # directory and file made below; chmod drops the inherited bit.
        os.chmod(rootfs, 0o700)
        try:
            config = _apply_all(layout, layers, image, rootfs, rootless, uid_map, gid_map, True)
        except _Restart:
            # A skipped file was needed after all (a hardlink to it, a path through it):
            # start again without skipping, which is the plain semantics.
            bfd = os.open(bundle_dir, _DFLAGS)
            try:
                inroot.remove_tree(bfd, "rootfs", unblock=True)
            finally:
                os.close(bfd)
            os.mkdir(rootfs, 0o700)
            os.chmod(rootfs, 0o700)
            config = _apply_all(layout, layers, image, rootfs, rootless, uid_map, gid_map, False)
        _write_config(bundle_dir, config)
    except BaseException as e:
        os.umask(old_umask)
        try:
            _remove_bundle(bundle_dir, claim)
        except OSError as cleanup:
            # The first failure is the one to report; the leftover is named with it.
            raise UnpackError(f"{_message(e)} (and the half-made bundle {bundle_dir} "
                              f"could not be removed: {_os_message(cleanup)})") from None
        from imagetool.bundle import BundleError
        if isinstance(e, (tarstream.TarError, inroot.InRootError, BundleError, OSError)):
            raise UnpackError(_message(e)) from None
        raise
    os.umask(old_umask)


def _apply_all(layout, layers, image, rootfs, rootless, uid_map, gid_map, skip: bool) -> dict:
    """Every layer applied to rootfs, then the directories' metadata; the runtime config.
    With `skip`, files that a later layer removes are not written (see _LaterRemovals)."""
    applier = _Applier(rootfs, rootless, uid_map, gid_map)
    scan = None
    try:
        if skip and len(layers) > 1 and sum(d["size"] for d, _ in layers) > _THREAD_ABOVE:
            scan = applier.scan = _LaterRemovals(layout, layers)
        for index, (desc, diff_id) in enumerate(layers):
            kept = scan.take(index) if scan is not None and index else None
            if kept is not None:
                applier.apply_verified(kept, desc, index)
                continue
            with _open_blob(layout, desc) as f:
                applier.apply_layer(f, desc, diff_id, index)
        applier.applying = False
        from imagetool import bundle
        config = bundle.runtime_config(image, applier.root, rootless=rootless,
                                       uid_map=uid_map, gid_map=gid_map)
        applier.finish()
    finally:
        if scan is not None:
            scan.stop()
        applier.close()
    return config


def _message(e: BaseException) -> str:
    if isinstance(e, OSError):
        return _os_message(e)
    return str(e) or type(e).__name__


def _os_message(e: OSError) -> str:
    where = e.filename if e.filename is not None else "unpack"
    return f"{where}: {e.strerror or e}"


# -- the image: manifest, config, layers --------------------------------------------

def _load_image(layout_dir: str, tag: str | None):
    from imagetool.layout import Layout, LayoutError
    try:
        layout = Layout(layout_dir)
        desc = layout.resolve(tag)
        manifest = layout.read_json(desc["digest"], desc.get("size"))
        if manifest.get("mediaType") in _INDEX_TYPES or desc.get("mediaType") in _INDEX_TYPES:
            desc = _pick_platform(manifest, f"{layout_dir}:{tag or ''}")
            manifest = layout.read_json(desc["digest"], desc.get("size"))
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict) or not isinstance(manifest.get("layers"), list):
            raise UnpackError(f"{desc['digest']}: not an image manifest (no config or layers)")
        image = layout.read_json(config_desc["digest"], config_desc.get("size"))
    except LayoutError as e:
        raise UnpackError(str(e)) from None
    except (KeyError, TypeError) as e:
        raise UnpackError(f"{layout_dir}: malformed manifest or index (missing {e})") from None
    return layout, manifest, image


def _pick_platform(index: dict, where: str) -> dict:
    import platform
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    for d in index.get("manifests") or []:
        p = d.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == arch:
            return d
    raise UnpackError(f"{where}: image index has no manifest for linux/{arch}")


def _layer_plan(manifest: dict, image: dict) -> list[tuple[dict, str]]:
    layers = manifest["layers"]
    rootfs = image.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise UnpackError("image config has no rootfs.diff_ids")
    if len(diff_ids) != len(layers):
        raise UnpackError(f"image config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
    if image.get("os", "linux") != "linux":
        raise UnpackError(f"image is for os {image.get('os')!r}, not linux")
    for desc in layers:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise UnpackError("manifest has a malformed layer descriptor")
        if type(desc.get("size")) is not int or desc["size"] < 0:
            # The size bounds what is read of the blob: without it, nothing does.
            raise UnpackError(f"{desc['digest']}: layer descriptor has no valid size")
        mt = desc.get("mediaType")
        if mt not in _TAR and mt not in _GZIP and mt not in _ZSTD:
            raise UnpackError(f"{desc['digest']}: unsupported layer media type {mt!r}")
    return list(zip(layers, diff_ids))


def _open_blob(layout, desc: dict):
    from imagetool.layout import LayoutError
    try:
        return layout.open_blob(desc["digest"])
    except LayoutError as e:
        raise UnpackError(str(e)) from None


def _hasher(digest: str, what: str, size: int):
    from imagetool.layout import _hasher as new_hash
    alg, sep, hexpart = digest.partition(":")
    if not sep or alg not in ("sha256", "sha512") or not hexpart:
        raise UnpackError(f"{digest}: malformed {what}")
    return new_hash(alg, size), hexpart


def _decompressor(desc: dict):
    mt = desc.get("mediaType")
    if mt in _GZIP:
        # ISA-L's inflate (python-isal): the same output as zlib's at ~2.2× its speed
        # here, and inflate is most of a big layer's producer time.
        from isal import isal_zlib
        return "gzip", isal_zlib
    if mt in _ZSTD:
        import zstandard  # a dependency: Python 3.11 has no zstd of its own
        return "zstd", zstandard
    return None, None


def layer_chunks(f, desc: dict, diff_id: str, threads: bool = False):
    """Decompressed chunks of one layer blob, checking its digest, size and diff_id.

    The checks run when the stream ends, so the consumer must exhaust it. `f`
    may be a blob_source() the caller keeps, to ask it after a failure whether
    the blob itself was intact. With `threads`, the blob is read and inflated in
    a thread of its own (_prefetch), and both sha256s, the blob's and the diff_id's,
    are computed by whichever of the two threads would otherwise wait (_SharedHash).
    """
    source = f if isinstance(f, _HashingSource) else blob_source(f, desc)
    # the uncompressed size is unknown: a few times the compressed one is the usual
    diff_hash, diff_hex = _hasher(diff_id, "diff_id", 3 * source.size)
    shared = None
    if threads:
        shared = _SharedHash()
        diff_hash = shared.hasher(diff_hash)
        source.hasher = shared.hasher(source.hasher)  # a caller's source too: its check() drains it
    chunks = _hashed(_blob_chunks(source, desc), diff_hash.update)
    if threads:
        chunks = _prefetch(chunks, shared)
    try:
        yield from chunks
    finally:
        chunks.close()  # stops the inflate thread, if any, before the caller reads on
    if diff_hash.hexdigest() != diff_hex:
        raise UnpackError(f"{desc['digest']}: uncompressed layer does not match diff_id {diff_id}")


def _hashed(chunks, update):
    try:
        for out in chunks:
            update(out)
            yield out
    finally:
        chunks.close()


class _SharedHash:
    """A big layer's two sha256s, the blob's and the diff_id's, fed in the streams' order
    by whichever thread would wait: the inflate thread when the consumer is behind (its
    queue full), the consumer when the inflate is (its queue empty), and the inflate
    thread in any case once more than `limit` chunks wait. On two cores the hashing (over
    a quarter of a layer's CPU) lands where there is slack, whether the inflate or the
    writing of files is the slower. Measured on the Debian bench image: sharing the
    blob's hash too took its unpack from 402 to 393 ms (10 rounds each, interleaved)."""

    def __init__(self, limit: int = 8) -> None:
        import collections
        import threading
        self.pending: collections.deque = collections.deque()  # (update, chunk)
        self.lock = threading.Lock()
        self.limit = limit

    def hasher(self, hasher) -> "_Queued":
        return _Queued(self, hasher)

    def add(self, update, chunk: bytes) -> None:
        """A chunk for `update` (in the inflate thread, in each stream's order)."""
        self.pending.append((update, chunk))
        while len(self.pending) > self.limit and self.step():
            pass

    def step(self) -> bool:
        """Hash the oldest chunk not hashed yet; False if there is none."""
        with self.lock:  # popped and hashed together: the order is the stream's
            if not self.pending:
                return False
            update, chunk = self.pending.popleft()
            update(chunk)
            return True


class _Queued:
    """A hasher whose updates wait in a _SharedHash."""
    __slots__ = ("shared", "hasher", "_update")

    def __init__(self, shared: _SharedHash, hasher) -> None:
        self.shared, self.hasher, self._update = shared, hasher, hasher.update

    def update(self, chunk: bytes) -> None:
        self.shared.add(self._update, chunk)

    def hexdigest(self) -> str:
        while self.shared.step():
            pass
        return self.hasher.hexdigest()


def _blob_chunks(source: "_HashingSource", desc: dict):
    """The layer's tar, in chunks; at its end, the blob checked against its descriptor."""
    yield from _inflated(source, desc)
    source.check(desc)


def _inflated(source: "_HashingSource", desc: dict):
    """The layer's tar, in chunks, as its media type says to decompress it."""
    kind, mod = _decompressor(desc)
    if kind == "gzip":
        return _gzip_chunks(mod, source, desc["digest"])
    if kind == "zstd":
        return _zstd_chunks(mod, source, desc["digest"])
    return iter(lambda: source.read(_CHUNK), b"")


def _size(desc: dict) -> int:
    size = desc.get("size")
    if type(size) is not int or size < 0:
        raise UnpackError(f"{desc.get('digest')}: descriptor has no valid size")
    return size


def blob_source(f, desc: dict) -> "_HashingSource":
    size = _size(desc)
    blob_hash, blob_hex = _hasher(desc["digest"], "layer digest", size)
    return _HashingSource(f, blob_hash, blob_hex, size)


class _HashingSource:
    """The compressed blob as the decompressor reads it: hashed and counted on the way,
    and never read past the size its descriptor declares (a blob that is a link to
    /dev/zero, or just longer, costs no more than an honest one)."""

    def __init__(self, f, hasher, hexdigest: str, size: int) -> None:
        self.f, self.hasher, self.hex, self.total = f, hasher, hexdigest, 0
        self.size = size

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.total
        if n < 0 or n > left:
            n = left
        if n == 0:
            return b""
        data = self.f.read(n)
        self.hasher.update(data)
        self.total += len(data)
        return data

    def intact(self) -> bool:
        """Read what is left of the declared size and compare the digest."""
        while self.read(_CHUNK):
            pass
        return self.total == self.size and self.hasher.hexdigest() == self.hex

    def check(self, desc: dict) -> None:
        """The blob is exactly what its descriptor says, or UnpackError names how not."""
        intact = self.intact()
        digest = desc["digest"]
        if self.total < self.size:
            raise UnpackError(f"{digest}: layer blob is {self.total} bytes, manifest says {self.size}")
        if self.f.read(1):
            raise UnpackError(f"{digest}: layer blob is longer than the {self.size} bytes "
                              "its descriptor declares")
        if not intact:
            raise UnpackError(f"{digest}: layer content does not match its digest")


def _gzip_chunks(inflate, source: _HashingSource, digest: str):
    """Every member of a gzip stream (pigz and `cat a.gz b.gz` write several).

    `inflate` is a module with zlib's decompressobj API (isal_zlib). Raw deflate
    with the gzip framing (RFC 1952) read here: a gzip mode spends a tenth of the
    inflate time on the CRC-32, which the diff_id (sha256 of the same bytes)
    already checks more strongly. The trailer's ISIZE is still compared.
    """
    buf = _GzipBuffer(source, digest)
    while True:
        buf.skip_header()
        dec = inflate.decompressobj(-15)
        size = 0
        data = buf.take()
        while True:
            if not data:
                data = source.read(_CHUNK)
                if not data:
                    raise UnpackError(f"{digest}: layer truncated (gzip stream ends early)")
            try:
                out = dec.decompress(data, _MAX_OUT)
            except inflate.error as e:
                raise UnpackError(f"{digest}: corrupt gzip stream ({e})") from None
            if out:
                size += len(out)
                yield out
            if dec.eof:
                # With max_length, zlib leaves the leftover in both unused_data and
                # unconsumed_tail (isal_zlib in unused_data only): it must be taken once.
                buf.put(dec.unused_data)
                break
            data = dec.unconsumed_tail
        trailer = buf.need(8, "gzip trailer")
        if int.from_bytes(trailer[4:], "little") != size & 0xFFFFFFFF:
            raise UnpackError(f"{digest}: corrupt gzip stream (length in trailer does not match)")
        if not buf.more():
            return
        if buf.peek(2) != b"\x1f\x8b":
            raise UnpackError(f"{digest}: trailing garbage after gzip stream")


class _GzipBuffer:
    """Bytes between deflate streams: gzip headers and trailers, read from the source."""

    def __init__(self, source: _HashingSource, digest: str) -> None:
        self.source, self.digest, self.buf = source, digest, b""

    def put(self, data: bytes) -> None:
        self.buf = data + self.buf

    def take(self) -> bytes:
        data, self.buf = self.buf, b""
        return data

    def more(self) -> bool:
        if not self.buf:
            self.buf = self.source.read(_CHUNK)
        return bool(self.buf)

    def peek(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.source.read(_CHUNK)
            if not data:
                break
            self.buf += data
        return self.buf[:n]

    def need(self, n: int, what: str) -> bytes:
        data = self.peek(n)
        if len(data) < n:
            raise UnpackError(f"{self.digest}: layer truncated (in a {what})")
        self.buf = self.buf[n:]
        return data

    def skip_header(self) -> None:
        head = self.need(10, "gzip header")
        if head[:2] != b"\x1f\x8b":
            raise UnpackError(f"{self.digest}: corrupt gzip stream (not a gzip header)")
        if head[2] != 8:
            raise UnpackError(f"{self.digest}: corrupt gzip stream (unknown compression method)")
        flags = head[3]
        if flags & 0xE0:
            raise UnpackError(f"{self.digest}: corrupt gzip stream (unknown header flags set)")
        if flags & 0x04:  # FEXTRA
            xlen = int.from_bytes(self.need(2, "gzip header"), "little")
            self.need(xlen, "gzip header")
        for bit in (0x08, 0x10):  # FNAME, FCOMMENT: NUL-terminated
            if flags & bit:
                self._skip_cstring()
        if flags & 0x02:  # FHCRC
            self.need(2, "gzip header")

    def _skip_cstring(self) -> None:
        while (end := self.buf.find(b"\0")) < 0:
            self.buf = self.source.read(_CHUNK)
            if not self.buf:
                raise UnpackError(f"{self.digest}: layer truncated (in a gzip header)")
        self.buf = self.buf[end + 1:]


def _zstd_chunks(zstandard, source: _HashingSource, digest: str):
    """Every frame of a zstd stream (writers may concatenate frames).

    A stream reader rather than decompressobj(): its read(n) bounds each step's
    output, where one decompress() call may expand a few bytes of RLE blocks into
    gigabytes. zstandard says nothing when the stream stops mid-frame; the diff_id
    check after the last chunk is what refuses a cut stream.
    """
    reader = zstandard.ZstdDecompressor().stream_reader(
        source, read_size=_CHUNK, read_across_frames=True, closefd=False)
    try:
        while out := reader.read(_MAX_OUT):
            yield out
    except zstandard.ZstdError as e:
        raise UnpackError(f"{digest}: corrupt zstd stream ({e})") from None
    finally:
        reader.close()
    if source.read(1):  # the reader stopped at something it does not take for a frame
        raise UnpackError(f"{digest}: trailing garbage after zstd stream")


# -- what later layers remove ----------------------------------------------------------------

class _Restart(Exception):
    """A file left unwritten because a later layer removes it turned out to be needed
    before that (a hardlink to it, a path through it): unpack again, writing everything."""


class _Stopped(Exception):
    pass


class _DeadPath(Exception):
    """The entry being applied lies below `key`, a directory not made that a later layer
    removes: the entry is skipped too."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Virtual(FileNotFoundError):
    """A path through a directory not made (a later layer removes it): not found, to a
    whiteout; a hardlink into it restarts the unpack."""


class _LaterRemovals:
    """What the layers above each layer remove, read from their tar headers in a thread
    beside the first layer's unpack, so that a file a later layer deletes (the docs, man
    pages and caches an image's last layers clean up: a third of the Debian bench image's
    entries) is neither written nor removed again.

    Why matching cleaned paths is sure: the key of a file being written is symlink-free,
    so every directory on the way to it is a real directory now. A later entry whose
    cleaned path is that key, or a directory above it, resolves to those same directories
    unless one of them is replaced or removed first, which removes the file anyway. A
    path that reaches it through symlinks is not matched, and the file is written as
    always. What could still see the file before it goes (a hardlink to it, a path
    through it, which is an error) makes the unpack start again without skipping.

    result: None until the scan is done; then (gone, below, dirs), each a dict from a
    cleaned path to the highest layer index that removes there: whiteouts and
    non-directory entries (the path and everything below it), opaque directories
    (everything below), directory entries (a file at the path). The blobs are checked
    against their digests, so the layers applied later are the ones scanned. Any failure
    leaves result None (no file is skipped): the layer's own unpack reports it.
    Layers bigger than those below them together are not scanned. A scanned layer's tar
    is kept (up to _KEEP_MAX in all) once its digest and diff_id are checked, and applied
    from memory (take), so no layer is inflated and hashed twice.
    """

    def __init__(self, layout, layers) -> None:
        import threading
        self.result = None
        self._stop = False
        # index → the layer's tar, in the chunks the scan inflated, once its digest and
        # diff_id are verified (what _KEEP_MAX allows): applied from here, not inflated again
        self._kept: dict[int, list] = {}
        self._passed = 0  # layers below this index are scanned (or not scanned: too big, failed)
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(layout, layers),
                                       name="layer-scan", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop = True
        self.thread.join()
        self._kept = {}

    def take(self, index: int) -> list | None:
        """Layer `index`'s verified tar chunks, if the scan kept them (waiting for the scan
        to get past it: it is inflating that layer anyway); None: read the blob."""
        with self._cond:
            while self._passed <= index and self.thread.is_alive():
                self._cond.wait()
            return self._kept.pop(index, None)

    def _passing(self, index: int) -> None:
        with self._cond:
            self._passed = index
            self._cond.notify_all()

    def _run(self, layout, layers) -> None:
        gone: dict[str, int] = {}
        below: dict[str, int] = {}
        dirs: dict[str, int] = {}
        lower = layers[0][0]["size"]
        budget = [_KEEP_MAX]
        try:
            for index in range(1, len(layers)):
                desc, diff_id = layers[index]
                if desc["size"] <= lower:
                    self._scan(layout, desc, diff_id, index, gone, below, dirs, budget)
                lower += desc["size"]
                self._passing(index + 1)
        except Exception:  # noqa: BLE001 - no skipping; the unpack of that layer says why
            return
        finally:
            self._passing(len(layers))
        self.result = (gone, below, dirs)

    def _chunks(self, chunks, kept: list, budget: list):
        keeping = True
        for chunk in chunks:
            if self._stop:
                raise _Stopped
            if keeping:
                if budget[0] >= len(chunk):
                    budget[0] -= len(chunk)
                    kept.append(chunk)
                else:  # too big to keep whole: none of it (its apply inflates it again)
                    budget[0] += sum(map(len, kept))
                    kept.clear()
                    keeping = False
            yield chunk

    def _scan(self, layout, desc: dict, diff_id: str, index: int, gone: dict, below: dict,
              dirs: dict, budget: list) -> None:
        kept: list = []
        with layout.open_blob(desc["digest"]) as f:
            reader = tarstream.TarReader(self._chunks(layer_chunks(f, desc, diff_id), kept, budget))
            while (h := reader.next()) is not None:
                reader.skip_data(h.name)
                try:
                    parts = inroot.clean(h.name)
                except inroot.InRootError:
                    continue  # refused when the layer is applied
                if not parts:
                    continue
                base = parts[-1]
                pkey = "/".join(parts[:-1])
                if base.startswith(".wh."):
                    # as _Applier._whiteout reads them
                    if base == ".wh..wh..opq":
                        below[pkey] = index
                    elif not base.startswith(".wh..wh.") and base[4:] not in ("", ".", ".."):
                        gone[pkey + "/" + base[4:] if pkey else base[4:]] = index
                elif h.type == tarstream.DIR:
                    dirs["/".join(parts)] = index
                elif h.type != tarstream.HARDLINK:  # a link to itself changes nothing
                    gone["/".join(parts)] = index
            reader.drain()  # the end of layer_chunks: the digest and diff_id are checked
        if kept:
            self._kept[index] = kept


# -- applying layers ------------------------------------------------------------------------

def _map_id(value: int, mapping: list | None, what: str, name: str) -> int:
    if mapping is None:
        return value
    for m in mapping:
        if m["containerID"] <= value < m["containerID"] + m["size"]:
            return m["hostID"] + value - m["containerID"]
    raise UnpackError(f"{name}: {what} {value} is not in the {what} map")


def _check_map(mapping, what: str) -> list | None:
    if mapping is None:
        return None
    out = []
    for m in mapping:
        try:
            c, h, s = int(m["containerID"]), int(m["hostID"]), int(m["size"])
        except (KeyError, TypeError, ValueError):
            raise UnpackError(f"{what} map entry {m!r}: needs containerID, hostID and size") from None
        if c < 0 or h < 0 or s <= 0:
            raise UnpackError(f"{what} map entry {m!r}: ids must be >= 0 and size > 0")
        out.append({"containerID": c, "hostID": h, "size": s})
    return out


def rootless_xattr(uid: int, gid: int) -> bytes:
    """user.rootlesscontainers payload: protobuf Resource{uid=1, gid=2}, 0 → NoopID."""
    out = bytearray()
    for tag, v in ((0x08, uid or _NOOP_ID), (0x10, gid or _NOOP_ID)):
        out.append(tag)
        while v > 0x7F:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class _Applier:
    def __init__(self, rootfs: str, rootless: bool, uid_map, gid_map):
        self.rootless = rootless
        self.uid_map = uid_map
        self.gid_map = gid_map
        # key → (mode, uid, gid, mtime_ns or None, xattrs); applied by finish().
        # The rootfs itself is 0755 root:root unless a layer has a "./" entry.
        self.dir_meta: dict[str, tuple] = {"": (0o755, 0, 0, None, None)}
        self.root = inroot.Root(rootfs, on_missing=self._missing)
        self.upper: set[str] = set()
        self.identity = uid_map is None and gid_map is None
        self.me = (os.geteuid(), os.getegid())
        # Entries a later layer removes are not written (_LaterRemovals): what they would
        # have been is kept here, for what could see them before they go.
        self.scan: _LaterRemovals | None = None
        self.layer = 0
        self.applying = True  # False once every layer is applied: what was skipped is gone
        self.doomed: tuple | None = None  # scan.result, once there
        self.removal_above: dict[str, int] = {}  # parent key → last layer removing all below it
        self.skipped: dict[str, str] = {}  # key → "f" (file, node) or "l" (symlink) not written
        self.skipped_dirs: dict[str, int] = {}  # key of a directory not made → last layer removing it
        self.linking = False  # the entry being applied is a hardlink (never skipped)
        self.dead_parent: tuple[str, str] | None = None  # (cleaned, resolved) of the last _DeadPath

    def close(self) -> None:
        self.root.close()

    def _missing(self, key: str, rest: list[str], create: bool) -> None:
        """Root.walk did not find the directory `key`: say what the plain unpack (every
        entry written) would have found there. It raises _DeadPath for an entry below a
        directory a later layer removes, _Restart where only the plain unpack can tell."""
        if self.applying and (self.skipped or self.skipped_dirs or self.doomed is not None):
            kind = self.skipped.get(key)
            if kind is not None:
                if kind == "l" or create:
                    raise _Restart  # through a symlink, or through a file (an error)
                return  # through a file: not found (callers take "not a directory" alike)
            last = self.skipped_dirs.get(key)
            if last is not None and self.layer <= last:
                if not create:
                    raise _Virtual(errno.ENOENT, "not written", key)
                if self.layer == last or self.linking:
                    raise _Restart  # its own layer may write into it before removing it
                self._dead_path(key, rest)
            if last is not None:
                del self.skipped_dirs[key]  # removed by now in the plain unpack too
            elif create and not self.linking:
                pkey = key[:max(key.rfind("/"), 0)]
                if self._removal(pkey, key, True) > self.layer:
                    self._dead_path(key, rest)
        if create:
            # A parent the layer never named: 0755 root:root, as umoci and Docker make them.
            self.dir_meta[key] = (0o755, 0, 0, None, None)

    def _dead_path(self, key: str, rest: list[str]) -> None:
        """The entry being applied lies below `key`, a directory a later layer removes: it
        is skipped (_DeadPath), unless its path goes on through something not written."""
        path = key
        for c in reversed(rest):
            if c == "" or c == ".":
                continue
            if c == "..":
                raise _Restart
            path = path + "/" + c
            inroot.check_depth(path)
            if path in self.skipped:
                raise _Restart
        raise _DeadPath(path)

    # -- owners -------------------------------------------------------------------

    def _owner(self, h) -> tuple[int, int] | None:
        """Host (uid, gid) to chown to, or None when no chown is needed."""
        if self.rootless:
            return None
        if self.identity:
            owner = (h.uid, h.gid)
        else:
            owner = (_map_id(h.uid, self.uid_map, "uid", h.name),
                     _map_id(h.gid, self.gid_map, "gid", h.name))
        return None if owner == self.me else owner

    def _xattrs(self, h) -> dict | None:
        xattrs = h.xattrs
        if not self.rootless:
            return xattrs
        xattrs = dict(xattrs or {})
        xattrs.pop(ROOTLESS_XATTR, None)
        if h.uid or h.gid:
            xattrs[ROOTLESS_XATTR] = rootless_xattr(h.uid, h.gid)
        return xattrs or None

    def _set_xattrs(self, target, xattrs: dict, name: str, symlink: bool = False) -> None:
        for k, v in xattrs.items():
            if symlink and k.startswith("user."):
                continue  # the kernel allows no user.* xattrs on symlinks
            try:
                os.setxattr(target, k, v)
            except OSError as e:
                if self.rootless and e.errno in (errno.EPERM, errno.EACCES):
                    continue  # security.*/trusted.* need privileges a rootless unpack lacks
                raise UnpackError(f"{name}: cannot set xattr {k}: {e.strerror}") from None

    # -- one layer ------------------------------------------------------------------

    def _start_layer(self, index: int) -> None:
        self.upper = set()
        self.layer, self.removal_above, self.dead_parent = index, {}, None

    def apply_verified(self, chunks: list, desc: dict, index: int) -> None:
        """A layer from the tar the scan inflated and checked against the digest and the
        diff_id (_LaterRemovals.take): nothing is read, inflated or hashed again."""
        self._start_layer(index)
        self._apply_entries(tarstream.TarReader(chunks), desc)

    def apply_layer(self, f, desc: dict, diff_id: str, index: int = 0) -> None:
        self._start_layer(index)
        source = blob_source(f, desc)
        # Threads pay off for big layers only: importing threading/queue alone costs
        # ~6 ms, more than inflating a small layer takes.
        big = desc.get("size", 0) > _THREAD_ABOVE
        if big and OWN_PROCESS:
            _roomy_heap()
        chunks = layer_chunks(source, desc, diff_id, threads=big)
        try:
            self._apply_entries(tarstream.TarReader(chunks), desc)
        except _Restart:
            chunks.close()
            raise
        except (UnpackError, tarstream.TarError, inroot.InRootError, OSError):
            # A corrupt blob inflates to garbage the tar reader trips over before the
            # digest can be checked: name the real cause when it is that.
            chunks.close()  # stops the inflate thread before we read on
            try:
                source.check(desc)
            except UnpackError as bad_blob:
                raise bad_blob from None
            raise

    def _apply_entries(self, reader, desc: dict) -> None:
        root = self.root
        entry = self.entry
        try:
            while True:
                h = reader.next()
                if h is None:
                    break
                root.trim()
                try:
                    entry(h, reader)
                except OSError as e:
                    raise UnpackError(f"layer {desc['digest']}: {inroot.shown(h.name)}: "
                                      f"{e.strerror or e}") from None
                except (ValueError, OverflowError) as e:  # a value no syscall takes (a NUL in an xattr name)
                    raise UnpackError(f"layer {desc['digest']}: {inroot.shown(h.name)}: {e}") from None
            reader.drain()
        except tarstream.TarError as e:
            raise UnpackError(f"layer {desc['digest']}: {e}") from None
        except inroot.InRootError as e:
            raise UnpackError(f"layer {desc['digest']}: {e}") from None

    def entry(self, h, reader) -> None:
        name = h.name
        dead_parent, self.dead_parent = self.dead_parent, None  # valid for the next entry only
        parts = inroot.clean(name)
        if not parts:
            if h.type != tarstream.DIR:
                raise UnpackError(f"{name}: refusing to change the type of the root directory")
            self.dir_meta[""] = self._dir_record(h)
            reader.skip_data(name)
            return
        base = parts[-1]
        if base.startswith(".wh."):
            reader.skip_data(name)
            self._whiteout(parts, name)
            return
        t = h.type
        self.linking = t == tarstream.HARDLINK
        try:
            if dead_parent is not None and t == tarstream.REG and len(parts) > 1 \
                    and "/".join(parts[:-1]) == dead_parent[0]:
                # the files of a directory not made come one after another: the walk
                # would end as it did for the last one (nothing but files made since)
                raise _DeadPath(dead_parent[1])
            pfd, pkey = self.root.parent(parts, True)
        except NotADirectoryError as e:
            raise UnpackError(f"{inroot.shown(name)}: parent {e.filename} is not a directory") from None
        except _DeadPath as dead:
            key = dead.key + "/" + base
            inroot.check_depth(key)
            self._skip(h, reader, -1, base, key, self._removal(dead.key, key, t == tarstream.DIR))
            if t == tarstream.REG:
                self.dead_parent = ("/".join(parts[:-1]), dead.key)
            return
        key = pkey + "/" + base if pkey else base
        inroot.check_depth(key)
        upper = self.upper
        k = key
        while k not in upper:
            upper.add(k)
            k = k.rpartition("/")[0]
            if not k:
                break
        if self.scan is not None and t != tarstream.HARDLINK:
            last = self._removal(pkey, key, t == tarstream.DIR)
            if last > self.layer:
                self._skip(h, reader, pfd, base, key, last)
                return
            if self.skipped:
                self.skipped.pop(key, None)
            if self.skipped_dirs:
                self.skipped_dirs.pop(key, None)
        if t == tarstream.REG:
            self._file(h, reader, pfd, base, key)
        elif t == tarstream.DIR:
            reader.skip_data(name)
            self._dir(h, pfd, base, key)
        elif t == tarstream.SYMLINK:
            self._symlink(h, pfd, base, key)
        elif t == tarstream.HARDLINK:
            self._hardlink(h, pfd, base, key)
        else:
            self._node(h, pfd, base, key)

    def _removal(self, pkey: str, key: str, as_dir: bool) -> int:
        """The last layer that removes what is at key (in pkey), -1 if none is known: a
        whiteout of it or of a directory above it, an opaque directory above it, an entry
        that replaces it or a directory above it, for a non-directory a directory entry
        at key (see _LaterRemovals for why that is sure)."""
        doomed = self.doomed
        if doomed is None:
            doomed = self.doomed = self.scan.result if self.scan is not None else None
            if doomed is None:
                return -1  # not known yet: written, as without the scan
        gone, below, dirs = doomed
        last = self.removal_above.get(pkey)
        if last is None:
            last = below.get("", -1)
            k = pkey
            while k:
                g, b = gone.get(k, -1), below.get(k, -1)
                last = g if g > last else last
                last = b if b > last else last
                k = k[:max(k.rfind("/"), 0)]
            self.removal_above[pkey] = last
        g = gone.get(key, -1)
        last = g if g > last else last
        if not as_dir:
            d = dirs.get(key, -1)
            last = d if d > last else last
        return last

    def _skip(self, h, reader, pfd: int, base: str, key: str, last: int) -> None:
        """Not written: the entry at key, which layer `last` removes. What the plain unpack
        would have replaced there goes all the same (pfd -1: nothing is there, its parent
        is not made either), and the entry's own checks that need no syscall are made."""
        reader.skip_data(h.name)
        if not self.identity:
            self._owner(h)  # an owner outside the maps is refused all the same
        t = h.type
        if t == tarstream.SYMLINK:
            inroot.check_name(h.linkname, "symlink target")
        if t == tarstream.DIR:
            if pfd >= 0:
                try:
                    st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None:
                    if stat.S_ISDIR(st.st_mode):
                        self.dir_meta[key] = self._dir_record(h)  # merged, as always
                        return
                    self._clear(pfd, base, key)
            self.skipped.pop(key, None)
            self.skipped_dirs[key] = last
            return
        if pfd >= 0:
            try:
                os.unlink(base, dir_fd=pfd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                self._rmtree(pfd, base, key)
        self.skipped_dirs.pop(key, None)
        self.skipped[key] = "l" if t == tarstream.SYMLINK else "f"

    def _file(self, h, reader, pfd: int, base: str, key: str) -> None:
        mode = h.mode
        try:
            fd = os.open(base, _WFLAGS, mode & 0o777, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, base, key)
            fd = os.open(base, _WFLAGS, mode & 0o777, dir_fd=pfd)
        try:
            reader.copy_to(fd, h.name)
            if self.identity and not self.rootless:  # the common case, without calls
                if h.uid != self.me[0] or h.gid != self.me[1]:
                    os.fchown(fd, h.uid, h.gid)
            else:
                owner = self._owner(h)
                if owner is not None:
                    os.fchown(fd, *owner)
            if mode & _SPECIAL_BITS:
                os.fchmod(fd, mode)  # after chown, which clears setuid/setgid
            xattrs = self._xattrs(h) if self.rootless else h.xattrs
            if xattrs:
                self._set_xattrs(fd, xattrs, h.name)
            os.utime(fd, ns=(h.mtime_ns, h.mtime_ns))
        finally:
            os.close(fd)

    def _dir_record(self, h) -> tuple:
        return (h.mode, h.uid, h.gid, h.mtime_ns, h.xattrs)

    def _dir(self, h, pfd: int, base: str, key: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._clear(pfd, base, key)
                os.mkdir(base, 0o700, dir_fd=pfd)
        self.dir_meta[key] = self._dir_record(h)

    def _symlink(self, h, pfd: int, base: str, key: str) -> None:
        # Stored verbatim (it is resolved in the root when used), but the kernel
        # stores no target with a NUL or of PATH_MAX bytes: say so in one line.
        inroot.check_name(h.linkname, "symlink target")
        try:
            os.symlink(h.linkname, base, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, base, key)
            os.symlink(h.linkname, base, dir_fd=pfd)
        self._meta_at(h, pfd, base, symlink=True)

    def _hardlink(self, h, pfd: int, base: str, key: str) -> None:
        inroot.check_name(h.linkname, "hardlink target")
        lparts = inroot.clean(h.linkname)
        if not lparts:
            raise UnpackError(f"{h.name}: hardlink to the root directory")
        try:
            lfd, lpkey = self.root.parent(lparts, False)
        except _Virtual:
            raise _Restart from None  # into a directory not made: its content is needed
        except (FileNotFoundError, NotADirectoryError):
            raise UnpackError(f"{h.name}: hardlink target {h.linkname} does not exist") from None
        lbase = lparts[-1]
        lkey = lpkey + "/" + lbase if lpkey else lbase
        if lkey == key:
            return  # a link to itself: nothing to do
        for attempt in (0, 1):
            try:
                os.link(lbase, base, src_dir_fd=lfd, dst_dir_fd=pfd, follow_symlinks=False)
                return
            except FileExistsError:
                if attempt:
                    raise
                self._clear(pfd, base, key)
            except FileNotFoundError:
                if lkey in self.skipped or lkey in self.skipped_dirs:
                    raise _Restart from None  # a link to what was not written: it is needed
                raise UnpackError(f"{h.name}: hardlink target {h.linkname} does not exist") from None
            except PermissionError:
                raise UnpackError(f"{h.name}: cannot hardlink to {h.linkname} "
                                  "(a directory, or not permitted)") from None

    def _node(self, h, pfd: int, base: str, key: str) -> None:
        t = h.type
        if t == tarstream.FIFO:
            make = lambda: os.mkfifo(base, h.mode & 0o777, dir_fd=pfd)  # noqa: E731
        elif self.rootless:
            # No mknod without privileges: umoci's stand-in is an empty file
            # with the node's permissions.
            def make():
                os.close(os.open(base, _WFLAGS, h.mode & 0o777, dir_fd=pfd))
        else:
            kind = stat.S_IFCHR if t == tarstream.CHAR else stat.S_IFBLK
            dev = os.makedev(h.devmajor, h.devminor)
            make = lambda: os.mknod(base, kind | (h.mode & 0o777), dev, dir_fd=pfd)  # noqa: E731
        try:
            make()
        except FileExistsError:
            self._clear(pfd, base, key)
            make()
        self._meta_at(h, pfd, base, symlink=False)

    def _meta_at(self, h, pfd: int, base: str, symlink: bool) -> None:
        owner = self._owner(h)
        if owner is not None:
            os.chown(base, *owner, dir_fd=pfd, follow_symlinks=False)
        if not symlink and h.mode & _SPECIAL_BITS:
            os.chmod(base, h.mode, dir_fd=pfd)  # just made by us: not a symlink
        xattrs = self._xattrs(h)
        if xattrs:
            opath = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                # O_PATH fds take no fsetxattr; their /proc magic link reaches
                # the inode itself, symlink or FIFO, without opening it.
                self._set_xattrs(f"/proc/self/fd/{opath}", xattrs, h.name, symlink)
            finally:
                os.close(opath)
        os.utime(base, ns=(h.mtime_ns, h.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    # -- removal and whiteouts ------------------------------------------------------------

    def _clear(self, pfd: int, base: str, key: str) -> None:
        """Remove whatever is at key (the new entry replaces it)."""
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            self._rmtree(pfd, base, key)
        else:
            os.unlink(base, dir_fd=pfd)

    def _rmtree(self, pfd: int, base: str, key: str) -> None:
        # dir_meta keeps the entries of what goes: finish() skips directories that
        # are gone, and a directory made again at a key records its own metadata.
        # (Dropping them here scanned all of dir_meta per removal.)
        self.root.forget(key)
        inroot.remove_tree(pfd, base)

    def _whiteout(self, parts: list[str], name: str) -> None:
        base = parts[-1]
        target = base[4:]
        if not target or target in (".", ".."):
            # umoci 0.4.7 removes the directory itself for `.wh.`, and its parent (the
            # bundle, for a top-level `.wh...`): not a name, so refused wherever it is.
            raise UnpackError(f"{inroot.shown(name)}: malformed whiteout")
        try:
            pfd, pkey = self.root.parent(parts, False)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing below to hide
        if base == ".wh..wh..opq":
            self._hide_children(pfd, pkey)
            return
        if base.startswith(".wh..wh."):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content
        key = pkey + "/" + target if pkey else target
        if self._hide(pfd, target, key):
            dfd = os.open(target, _DFLAGS, dir_fd=pfd)
            try:
                self._hide_children(dfd, key)
            finally:
                os.close(dfd)

    def _hide(self, pfd: int, base: str, key: str) -> bool:
        """Remove key unless this layer wrote it (False); True: it is a directory
        this layer wrote, whose lower content the caller must hide in turn."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if key not in self.upper:
            if stat.S_ISDIR(st.st_mode):
                self._rmtree(pfd, base, key)
            else:
                os.unlink(base, dir_fd=pfd)
            return False
        return stat.S_ISDIR(st.st_mode)

    def _hide_children(self, dfd: int, dkey: str) -> None:
        """Hide everything below dkey that this layer did not write: down into the
        directories it wrote by name and back by "..", one fd at a time, any depth."""
        fd = os.open(".", _DFLAGS, dir_fd=dfd)
        try:
            frames = [(dkey, os.listdir(fd))]
            while True:
                key, names = frames[-1]
                if not names:
                    frames.pop()
                    if not frames:
                        return
                    fd = inroot.up(fd)
                    continue
                child = names.pop()
                ckey = key + "/" + child if key else child
                if self._hide(fd, child, ckey):
                    sub = os.open(child, _DFLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = sub
                    frames.append((ckey, os.listdir(fd)))
        finally:
            os.close(fd)

    # -- directories, last -----------------------------------------------------------------

    def finish(self) -> None:
        """Apply directory metadata, children before parents and the root last: a
        parent's final mode (0555, 0000) must not stop us from reaching what is below.

        A post-order walk of the tree of directories: down by name, back up by ".."
        (opened before the directory's own mode is set), so each directory costs two
        opens and one fd at a time, however deep the tree.
        """
        children: dict[str, list[str]] = {}
        for key in self.dir_meta:
            while key:
                parent, _, base = key.rpartition("/")
                known = parent in children
                children.setdefault(parent, []).append(base)
                if known or parent in self.dir_meta:
                    break
                key = parent  # a directory with no record of its own: linked in all the same
        fd = os.open(".", _DFLAGS, dir_fd=self.root.fd)
        try:
            frames = [("", children.get("", []))]
            while True:
                key, names = frames[-1]
                if names:
                    child = names.pop()
                    ckey = key + "/" + child if key else child
                    try:
                        sub = os.open(child, _DFLAGS, dir_fd=fd)
                    except OSError as e:
                        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                            continue  # removed by a later layer (its record stays behind)
                        raise
                    os.close(fd)
                    fd = sub
                    frames.append((ckey, children.get(ckey, [])))
                    continue
                frames.pop()
                parent = os.open("..", _DFLAGS, dir_fd=fd) if frames else -1
                try:
                    self._dir_finish(fd, key)
                finally:
                    os.close(fd)
                    fd = parent
                if not frames:
                    return
        finally:
            if fd >= 0:
                os.close(fd)

    def _dir_finish(self, fd: int, key: str) -> None:
        meta = self.dir_meta.get(key)
        if meta is None:
            return
        mode, uid, gid, mtime_ns, xattrs = meta
        name = key or "/"
        h = _DirHeader(name, uid, gid, xattrs)
        owner = self._owner(h)
        if owner is None and not self.rootless:
            owner = self.me  # directories are few: always chown, whatever mkdir inherited
        if owner is not None:
            os.fchown(fd, *owner)
        x = self._xattrs(h)
        if x:
            self._set_xattrs(fd, x, name)
        os.fchmod(fd, mode)
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))


class _DirHeader:
    __slots__ = ("name", "uid", "gid", "xattrs")

    def __init__(self, name, uid, gid, xattrs):
        self.name, self.uid, self.gid, self.xattrs = name, uid, gid, xattrs


_THREAD_ABOVE = 4 << 20  # compressed bytes
# What the scan keeps of the upper layers' tars, to apply them without a second inflate
# and hash (the Debian bench image's: 17.7 MB); a layer that does not fit is read again.
_KEEP_MAX = 64 << 20


# True in the imagetool command's own process (cliargs.run_unpack): see _roomy_heap.
OWN_PROCESS = False
_heap_tuned = False


def _roomy_heap() -> None:
    """Tell glibc's malloc to keep what it frees. A big layer streams through chunks of
    ~1.5 MB made in the inflate thread and freed in this one; with the default (dynamic)
    thresholds the heap gave their pages back and faulted them in again: ~22,000 page
    faults per Debian bench unpack, ~11,000 with these, and 5-10% of its wall time. Only
    in the command's own process: a library caller's heap is the caller's business."""
    global _heap_tuned
    if _heap_tuned:
        return
    _heap_tuned = True
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return  # no ctypes, or a libc without mallopt: the default heap
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: chunks up to 32 MiB come from the heap
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: up to 64 MiB free at its top stays


def _prefetch(chunks, shared: _SharedHash, depth: int = 4):
    """Run the producer (read, inflate) in a thread: isal, zstandard and hashlib drop
    the GIL, so on two cores it overlaps with the tar work. `shared`: the hashes of the
    chunks, which both sides work on when they would wait."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for c in chunks:
                if stop.is_set():
                    return
                while q.full() and not stop.is_set() and shared.step():
                    pass
                q.put(c)
            while not stop.is_set() and shared.step():
                pass  # the rest, beside the consumer's backlog
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)
        finally:
            chunks.close()  # here, not when collected: it may own a thread to stop

    t = threading.Thread(target=produce, name="layer-inflate", daemon=True)
    t.start()
    try:
        while True:
            if q.empty():
                while shared.step() and q.empty():
                    pass
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)
        t.join()


# -- the bundle directory -----------------------------------------------------------------------

# The bundle is the caller's alone, as umoci makes it: a rootfs holds the image's
# setuid-root binaries and its device nodes, which no other host user may reach.
BUNDLE_MODE = 0o700


def _claim_bundle(bundle_dir: str) -> int | None:
    """Make the bundle dir (None) or take an empty existing one (its mode before,
    to give back if the unpack fails). Either way it ends BUNDLE_MODE, without a
    setgid bit inherited from its parent."""
    try:
        os.mkdir(bundle_dir, BUNDLE_MODE)
        os.chmod(bundle_dir, BUNDLE_MODE)
        return None
    except FileExistsError:
        if not os.path.isdir(bundle_dir) or os.path.islink(bundle_dir):
            raise UnpackError(f"{bundle_dir}: exists and is not a directory") from None
        if os.listdir(bundle_dir):
            raise UnpackError(f"{bundle_dir}: bundle directory exists and is not empty") from None
        old = stat.S_IMODE(os.stat(bundle_dir).st_mode)
        os.chmod(bundle_dir, BUNDLE_MODE)
        return old
    except FileNotFoundError:
        raise UnpackError(f"{bundle_dir}: parent directory does not exist") from None
    except OSError as e:
        raise UnpackError(f"{bundle_dir}: cannot create bundle directory: {e.strerror}") from None


def _write_config(bundle_dir: str, config: dict) -> None:
    from specs import fastjson
    path = os.path.join(bundle_dir, "config.json")
    fd = os.open(path, _WFLAGS, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(fastjson.dumps(config, indent="\t") + "\n")


def _remove_bundle(bundle_dir: str, claim: int | None) -> None:
    """Take back what the unpack made: the bundle dir if it made it, else what it
    put inside (and the mode it found). Iterative: a tree of any depth goes."""
    try:
        bfd = os.open(bundle_dir, _DFLAGS)
    except OSError:
        return
    try:
        if inroot.exists_as_dir(bfd, "rootfs"):
            # unblock: a rootless unpack may have applied 0555 or 0000 already
            inroot.remove_tree(bfd, "rootfs", unblock=True)
        for name in ("rootfs", "config.json"):
            try:
                os.unlink(name, dir_fd=bfd)
            except FileNotFoundError:
                pass
        if claim is not None:
            os.chmod(bfd, claim)
    finally:
        os.close(bfd)
    if claim is None:
        os.rmdir(bundle_dir)
