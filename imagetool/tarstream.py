"""A lean, strict, streaming tar reader for image layers.

Why not `tarfile`: it builds a TarInfo per member, seeks, and accepts
things a layer must not contain (it tolerates bad checksums in some modes,
sparse members, …). Layers are ustar/PAX/GNU archives written by Go's
archive/tar, BuildKit, umoci or Python; this reader accepts exactly those
and says which entry is wrong otherwise.

The reader pulls decompressed chunks from an iterator and hands the caller
one `Header` at a time; the caller must consume the entry's data (with
`copy_to`, `read_data` or `skip_data`) before asking for the next header.
"""
from __future__ import annotations

import os
from zlib import adler32

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
# PAX and GNU long-name records are metadata; Go caps them at 1 MiB too.
MAX_META = 1 << 20

# What the kernel can hold: ids below 2**32 - 1 (that value means "no change" to
# chown), seconds in a 64-bit time_t, device numbers of 12 (major) and 20 (minor)
# bits (a bigger one is silently cut to another device by mknod).
MAX_ID = (1 << 32) - 2
MAX_SECONDS = (1 << 63) - 1
MAX_MAJOR = (1 << 12) - 1
MAX_MINOR = (1 << 20) - 1

REG, HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_REGULAR_TYPES = {"0": REG, "\0": REG, "7": REG}
_PLAIN_TYPES = {"1", "2", "3", "4", "5", "6"}
_META_TYPES = {"x", "g", "L", "K"}  # records about the next entry
_PAX_TIMES = frozenset(("mtime", "atime", "ctime"))
_NAMES = {"S": "GNU sparse file", "M": "GNU multi-volume continuation", "V": "volume label"}


class TarError(Exception):
    """Malformed or unsupported archive content; str() is one line."""


class Header:
    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "linkname",
                 "devmajor", "devminor", "xattrs")

    def __init__(self, name, type_, mode, uid, gid, size, mtime_ns, linkname,
                 devmajor, devminor, xattrs):
        self.name = name
        self.type = type_
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime_ns = mtime_ns
        self.linkname = linkname
        self.devmajor = devmajor
        self.devminor = devminor
        self.xattrs = xattrs


def _cstr(field: bytes) -> str:
    end = field.find(b"\0")
    if end >= 0:
        field = field[:end]
    return field.decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str, name: str) -> int:
    # The common field, octal digits up to a NUL; anything else (spaces, base-256, blank,
    # junk) goes to _number_strict. isdigit first: int() would also take a sign, `_` and
    # other whitespace, which Go's archive/tar (umoci's reader) refuses.
    end = field.find(0)
    digits = field[:end] if end >= 0 else field
    if digits.isdigit():
        try:
            return int(digits, 8)
        except ValueError:  # an 8 or a 9
            pass
    return _number_strict(field, what, name)


def _number_strict(field: bytes, what: str, name: str) -> int:
    if field and field[0] & 0x80:
        # GNU base-256: big-endian two's complement, first byte 0x80 or 0xff.
        value = int.from_bytes(field[1:], "big")
        if field[0] == 0xFF:
            value -= 1 << (8 * (len(field) - 1))
        elif field[0] != 0x80:
            raise TarError(f"{name or '?'}: malformed {what} field in tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        if not text.isdigit():  # as Go's parser: octal digits only, no sign, `_` or tab
            raise ValueError
        return int(text, 8)
    except ValueError:
        raise TarError(f"{name or '?'}: malformed {what} field in tar header") from None


def _byte_sum(block: bytes) -> int:
    """sum(block), in C: the low half of Adler-32 is 1 + the sum of the bytes modulo 65521,
    exact for 256 bytes (at most 65280). A quarter of sum()'s time, twice per entry."""
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def _checksum_ok(block: bytes, stored: int) -> bool:
    # The checksum field counts as eight spaces (8 * 32 = 256).
    unsigned = _byte_sum(block) - sum(block[148:156]) + 256
    if unsigned == stored:
        return True
    # Some old writers summed signed chars.
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    return signed == stored


def _pax_time_ns(value: str, name: str) -> int:
    sign = 1
    if value.startswith("-"):
        sign, value = -1, value[1:]
    whole, _, frac = value.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise TarError(f"{name}: malformed PAX mtime {value!r}")
    return sign * (int(whole) * 1_000_000_000 + int((frac + "000000000")[:9]))


def _pax_records(data: bytes, name: str) -> dict[str, bytes]:
    """The records of a PAX header. The common one is read by lines: when every line's
    length field counts exactly that line (and what follows the last is nothing or NUL
    padding), the records are the lines; otherwise (a value holding a newline, anything
    malformed) _pax_records_strict walks it by the lengths, and says what is wrong."""
    lines = data.split(b"\n")
    tail = lines.pop()
    if not tail or tail[0] == 0:
        records: dict[str, bytes] = {}
        for line in lines:
            space = line.find(b" ")
            if space <= 0 or not line[:space].isdigit():
                break
            length = int(line[:space])
            if length != len(line) + 1:
                break
            key, eq, value = line[space + 1:].partition(b"=")
            if not eq:
                break
            records[key.decode("utf-8", "surrogateescape")] = value
        else:
            return records
    return _pax_records_strict(data, name)


def _pax_records_strict(data: bytes, name: str) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            break  # NUL padding after the last record
        space = data.find(b" ", pos)
        if space < 0:
            raise TarError(f"{name}: malformed PAX header record")
        digits = data[pos:space]
        if not digits.isdigit():  # int() would also take `_`, a sign, blanks around it
            raise TarError(f"{name}: malformed PAX header record length")
        length = int(digits)
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1] != 0x0A:
            raise TarError(f"{name}: malformed PAX header record")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise TarError(f"{name}: malformed PAX header record (no '=')")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


class TarReader:
    """Pull-parser over an iterator of byte chunks (the decompressed layer)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buf = b""
        self._pos = 0
        self._pending = 0  # bytes of the current entry's data + padding not yet consumed
        self._data_left = 0
        self._ended = False  # the stream ended where the last entry's padding would start
        self.offset = 0  # bytes consumed before _buf

    # -- buffer primitives -----------------------------------------------------

    def _fill(self) -> bool:
        """The next chunk becomes the buffer; the caller has taken all of the old one.
        (Joining the rest to each new chunk copied every byte of the layer once more.)"""
        for chunk in self._chunks:
            if chunk:
                self.offset += len(self._buf)
                self._buf = chunk
                self._pos = 0
                return True
        return False

    def _read(self, n: int) -> bytes:
        buf, pos = self._buf, self._pos
        end = pos + n
        if end <= len(buf):
            self._pos = end
            return buf[pos:end]
        parts = [buf[pos:]]
        need = end - len(buf)
        self._pos = len(buf)
        while need:
            if not self._fill():
                break  # short: the caller says what was truncated
            buf = self._buf
            take = need if need < len(buf) else len(buf)
            parts.append(buf[:take])
            self._pos = take
            need -= take
        return b"".join(parts)

    def _skip(self, n: int, name: str) -> None:
        avail = len(self._buf) - self._pos
        while n > avail:
            n -= avail
            self._pos = len(self._buf)
            if not self._fill():
                raise TarError(f"{name}: archive truncated")
            avail = len(self._buf)
        self._pos += n

    # -- entry data --------------------------------------------------------------

    def copy_to(self, fd: int, name: str) -> None:
        """Write the current entry's data to fd."""
        n = self._data_left
        write = os.write
        buf, pos = self._buf, self._pos
        while n:
            avail = len(buf) - pos
            if avail == 0:
                self._pos = pos
                if not self._fill():
                    raise TarError(f"{name}: archive truncated inside file data")
                buf, pos = self._buf, 0
                continue
            step = avail if avail < n else n
            view = memoryview(buf)[pos:pos + step]
            while view:
                done = write(fd, view)
                view = view[done:]
            pos += step
            n -= step
        self._pos = pos
        self._data_left = 0
        self._finish_entry(name)

    def read_data(self, limit: int, name: str) -> bytes:
        if self._data_left > limit:
            raise TarError(f"{name}: entry of {self._data_left} bytes is larger than {limit}")
        data = self._read(self._data_left)
        if len(data) != self._data_left:
            raise TarError(f"{name}: archive truncated inside entry data")
        self._data_left = 0
        self._finish_entry(name)
        return data

    def skip_data(self, name: str) -> None:
        self._skip(self._data_left, name)
        self._data_left = 0
        self._finish_entry(name)

    def _finish_entry(self, name: str) -> None:
        n, self._pending = self._pending, 0
        if not n:
            return
        if len(self._buf) - self._pos >= n:
            self._pos += n
            return
        # A stream that ends exactly where the padding would start ends the archive, as
        # Go's archive/tar reads it: umoci 0.4.7's `insert` writes its layers so (no
        # padding, no end-of-archive blocks), under a diff_id that covers it.
        if len(self._buf) == self._pos and not self._fill():
            self._ended = True
            return
        self._skip(n, name)

    def drain(self) -> int:
        """Consume whatever follows the end-of-archive marker (the diff_id covers it)."""
        extra = len(self._buf) - self._pos
        self._pos = len(self._buf)
        for chunk in self._chunks:
            extra += len(chunk)
        return extra

    # -- headers -------------------------------------------------------------------

    def next(self) -> Header | None:
        """The next entry's header, or None at the end of the archive."""
        if self._data_left or self._pending:
            raise TarError("internal: previous entry's data not consumed")
        if self._ended:
            return None
        pax: dict[str, bytes] = {}
        long_name = long_link = None
        last = "?"
        while True:
            buf, pos = self._buf, self._pos
            end = pos + BLOCK
            if end <= len(buf):
                block = buf[pos:end]
                self._pos = end
            else:
                block = self._read(BLOCK)
                if len(block) < BLOCK:
                    if not block and not pax and long_name is None and long_link is None:
                        # A stream without end-of-archive blocks: Go's reader accepts it too.
                        return None
                    raise TarError(f"{last}: archive truncated in a header")
            if block == _ZERO_BLOCK:
                nxt = self._read(BLOCK)
                if nxt and nxt.count(0) != len(nxt):
                    raise TarError(f"{last}: data after a zero block where end of archive was expected")
                return None
            raw_name = _cstr(block[0:100])
            last = raw_name or last
            stored = _number(block[148:156], "checksum", raw_name)
            # _checksum_ok's first reading, inline: the common case costs no call
            if ((adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) + 254
                    - sum(block[148:156]) != stored and not _checksum_ok(block, stored)):
                raise TarError(f"{raw_name or '?'}: tar header checksum mismatch")
            typeflag = chr(block[156])
            size = _number(block[124:136], "size", raw_name)
            if size < 0:
                raise TarError(f"{raw_name or '?'}: negative size {size} in tar header")
            if typeflag in _META_TYPES:
                if size > MAX_META:
                    raise TarError(f"{raw_name or '?'}: {size}-byte metadata record is too large")
                buf, pos = self._buf, self._pos
                end = pos + size
                padded = end + (-size % BLOCK)
                if padded <= len(buf):  # the common case: record and padding in this chunk
                    data = buf[pos:end]
                    self._pos = padded
                else:
                    data = self._read(size)
                    if len(data) != size:
                        raise TarError(f"{raw_name or '?'}: archive truncated in a metadata record")
                    self._skip(-size % BLOCK, raw_name)
                if typeflag == "x":
                    if pax:
                        pax.update(_pax_records(data, raw_name))
                    else:
                        pax = _pax_records(data, raw_name)
                elif typeflag == "L":
                    long_name = _cstr(data)
                elif typeflag == "K":
                    long_link = _cstr(data)
                # "g" (global PAX header, e.g. git-archive's comment): ignored, as Docker does.
                continue
            return self._header(block, typeflag, size, raw_name, pax, long_name, long_link)

    def _header(self, block, typeflag, size, raw_name, pax, long_name, long_link) -> Header:
        name = raw_name
        if block[345] and block[257:263] == b"ustar\0":  # a prefix, not empty
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + "/" + name
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        else:
            linkname = _cstr(block[157:257]) if block[157] else ""
        mode = _number(block[100:108], "mode", name)
        uid = _number(block[108:116], "uid", name)
        gid = _number(block[116:124], "gid", name)
        mtime_ns = _number(block[136:148], "mtime", name) * 1_000_000_000
        xattrs = None
        if pax:
            name, linkname, size, uid, gid, mtime_ns, xattrs = self._apply_pax(
                pax, name, linkname, size, uid, gid, mtime_ns)
        if not name:
            raise TarError("tar entry with an empty name")
        if typeflag in _REGULAR_TYPES:
            if name.endswith("/") and typeflag == "\0":
                typeflag, size = DIR, 0  # pre-POSIX directory
            else:
                typeflag = REG
        elif typeflag == "D":
            typeflag = DIR  # GNU dumpdir: a directory whose data is a listing (skipped)
        elif typeflag in _PLAIN_TYPES:
            size = 0  # header-only types carry no data whatever the size field says (as Go reads them)
        else:
            what = _NAMES.get(typeflag, f"type {typeflag!r}")
            raise TarError(f"{name}: unsupported tar entry ({what})")
        if uid < 0 or gid < 0:
            raise TarError(f"{name}: negative owner {uid}:{gid}")
        if uid > MAX_ID or gid > MAX_ID:
            raise TarError(f"{name}: owner {uid}:{gid} out of range")
        if not -MAX_SECONDS <= mtime_ns // 1_000_000_000 <= MAX_SECONDS:
            raise TarError(f"{name}: mtime out of range")
        devmajor = devminor = 0
        if typeflag == CHAR or typeflag == BLOCKDEV:
            devmajor = _number(block[329:337], "devmajor", name)
            devminor = _number(block[337:345], "devminor", name)
            if not (0 <= devmajor <= MAX_MAJOR and 0 <= devminor <= MAX_MINOR):
                raise TarError(f"{name}: device number {devmajor}:{devminor} out of range")
        self._data_left = size
        self._pending = -size % BLOCK
        return Header(name, typeflag, mode & 0o7777, uid, gid, size, mtime_ns, linkname,
                      devmajor, devminor, xattrs)

    @staticmethod
    def _apply_pax(pax, name, linkname, size, uid, gid, mtime_ns):
        if len(pax) <= 3 and _PAX_TIMES.issuperset(pax):
            # GNU tar's and Python's common header: times only, of which mtime is ours
            if "mtime" in pax:
                mtime_ns = _pax_time_ns(pax["mtime"].decode("utf-8", "surrogateescape"), name)
            return name, linkname, size, uid, gid, mtime_ns, None

        def text(v: bytes) -> str:
            return v.decode("utf-8", "surrogateescape")

        def integer(key: str) -> int:
            v = pax[key]
            if not v.isdigit():
                raise TarError(f"{name}: malformed PAX {key} {text(v)!r}")
            return int(v)

        xattrs = None
        if "path" in pax:
            name = text(pax["path"])
        if "linkpath" in pax:
            linkname = text(pax["linkpath"])
        if "size" in pax:
            size = integer("size")
        if "uid" in pax:
            uid = integer("uid")
        if "gid" in pax:
            gid = integer("gid")
        if "mtime" in pax:
            mtime_ns = _pax_time_ns(text(pax["mtime"]), name)
        for key, value in pax.items():
            if "." not in key:
                continue  # path, size, mtime, atime, ctime…: taken above or not ours
            if key.startswith("SCHILY.xattr."):
                if "\0" in key:
                    raise TarError(f"{name}: NUL byte in xattr name")
                xattrs = xattrs or {}
                xattrs[key[13:]] = value
            elif key.startswith("LIBARCHIVE.xattr."):
                import base64
                import urllib.parse
                xattrs = xattrs or {}
                try:
                    xname = urllib.parse.unquote(key[17:])
                    xattrs[xname] = base64.b64decode(value + b"==")
                except ValueError:
                    raise TarError(f"{name}: malformed PAX {key}") from None
                if "\0" in xname:
                    raise TarError(f"{name}: NUL byte in xattr name")
            elif key.startswith("GNU.sparse."):
                raise TarError(f"{name}: unsupported tar entry (GNU sparse file)")
        return name, linkname, size, uid, gid, mtime_ns, xattrs
