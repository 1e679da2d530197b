"""imagetool.tarstream's header checksum, at the sums where a shortcut would go wrong."""
from __future__ import annotations

import pytest

from imagetool import tarstream


def _header(name: bytes, chksum=None, high: bool = False) -> bytes:
    """A ustar header for a 0-byte regular file; the checksum as given (default: right).
    `high`: bytes 0xff in the name, link name and prefix fields, so that the header's sum
    (over 90,000) passes Adler-32's modulus 65521 and each half of it is near its largest."""
    h = bytearray(512)
    if high:
        h[0:100] = h[157:257] = b"\xff" * 100
        h[345:500] = b"\xff" * 155
    else:
        h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"00000000000\0"
    h[136:148] = b"14000000000\0"
    h[156:157] = b"0"
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    right = sum(h)
    h[148:156] = b"%07o\0" % (right if chksum is None else chksum(right, h))
    return bytes(h)


def _read(block: bytes):
    reader = tarstream.TarReader(iter([block + bytes(1024)]))
    h = reader.next()
    reader.skip_data(h.name)
    return h


HIGH = b"\xff" * 155 + b"/" + b"\xff" * 100  # the name such a header gives (prefix/name)


@pytest.mark.parametrize("name,high", [(b"plain", False), (HIGH, True)])
def test_right_checksum_is_accepted(name, high):
    assert _read(_header(name, high=high)).name.encode("utf-8", "surrogateescape") == name


@pytest.mark.parametrize("off", [1, -1, 65521, -65521, 65536])
def test_checksum_off_by_any_amount_is_refused(off):
    """65521 is Adler-32's modulus: a sum taken modulo it would let the ±65521 through."""
    block = _header(b"", lambda right, h: right + off, high=True)
    with pytest.raises(tarstream.TarError, match="checksum mismatch"):
        _read(block)


def test_signed_checksum_of_old_writers_is_accepted():
    def signed(right, h):
        h[148:156] = b" " * 8
        return sum(b - 256 if b > 127 else b for b in h)
    assert _read(_header(b"", signed, high=True)).type == tarstream.REG
