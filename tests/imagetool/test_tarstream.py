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


# -- the fast readings agree with the strict ones --------------------------------------

@pytest.mark.parametrize("field", [
    b"0000644\0", b"644     ", b" 644 \0\0\0", b"0644\0\0\0\0", b"\0" * 8, b" " * 8,
    b"00000644", b"012345\0 ", b"0000\x0012\0", b"\x80\0\0\0\0\0\x01\x02",
    b"\xff\xff\xff\xff\xff\xff\xff\xfe", b"\x81\0\0\0\0\0\0\0", b"0009\0\0\0\0", b"12 34\0\0\0",
    b"+644\0\0\0\0", b"0o644\0\0\0", b"\t644\0\0\0\0", b"6_4_4\0\0\0"])
def test_number_fast_path_reads_as_the_strict_one(field):
    def strict():
        try:
            return tarstream._number_strict(field, "mode", "f")
        except tarstream.TarError as e:
            return str(e)

    def fast():
        try:
            return tarstream._number(field, "mode", "f")
        except tarstream.TarError as e:
            return str(e)
    assert fast() == strict()


@pytest.mark.parametrize("field", [b"+644\0\0\0\0", b"-0000001", b"\t644\0\0\0\0", b"6_4_4\0\0\0",
                                   b"0o644\0\0\0", b"0009\0\0\0\0", b"12 34\0\0\0"])
def test_a_number_go_refuses_is_refused(field):
    """Go's archive/tar (umoci's reader) takes octal digits between spaces and NULs only;
    Python's int() would also take a sign, `_` and a tab."""
    with pytest.raises(tarstream.TarError, match="malformed mode field"):
        tarstream._number(field, "mode", "f")


@pytest.mark.parametrize("data", [
    b"30 mtime=1796321385.027355065\n30 atime=1796321358.767353957\n",
    b"30 mtime=1796321385.027355065\n\0\0\0\0",
    b"19 path=a\nb/c/d/e\n",            # a value holding a newline: the lengths decide
    b"18 path=a\nb/c/d/e\n",            # a length one short
    b"12 path=abc\n12 path=xyz\n",      # the later record wins
    b"10 path=\n", b"9 path=\n", b"7 path\n", b"x path=a\n", b"\n", b"11 path=ab",
    b"11 path=ab\nrest", b"11 path=ab\n\0x\n11 path=cd\n", b" 9 p=ab\n", b"9 =abcd\n",
    b"1_1 path=a\n", b"\t11 path=a\n", b"+11 path=a\n",
])
def test_pax_records_fast_path_reads_as_the_strict_one(data):
    def outcome(parse):
        try:
            return parse(data, "f")
        except tarstream.TarError as e:
            return str(e)
    assert outcome(tarstream._pax_records) == outcome(tarstream._pax_records_strict)


@pytest.mark.parametrize("length", [b"1_2", b"\t12", b"+12", b"12\t"])
def test_a_pax_length_with_more_than_digits_is_refused(length):
    """A record's length is decimal digits. Python's int() also takes `_`, a sign and blanks
    around the digits, and each record here is 12 bytes long, as int() would read its length."""
    record = length + b" p=xxxxx\n"
    assert len(record) == int(length)
    for parse in (tarstream._pax_records, tarstream._pax_records_strict):
        with pytest.raises(tarstream.TarError, match="malformed PAX header record length"):
            parse(record, "f")


def test_chunks_of_any_size_read_alike():
    """Headers, PAX records and data cut anywhere between chunks: the same entries."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, size in enumerate([0, 1, 511, 512, 513, 3000]):
            info = tarfile.TarInfo(f"dir/{'é' * i}file{i}")
            info.size, info.mtime = size, 1700000000.25 + i
            tar.addfile(info, io.BytesIO(bytes([i + 1]) * size))
        link = tarfile.TarInfo("dir/link")
        link.type, link.linkname = tarfile.SYMTYPE, "x" * 150
        tar.addfile(link)
    data = buf.getvalue()

    def entries(step):
        chunks = [data[i:i + step] for i in range(0, len(data), step)]
        reader = tarstream.TarReader(iter(chunks))
        out = []
        while (h := reader.next()) is not None:
            out.append((h.name, h.type, h.size, h.mtime_ns, h.linkname,
                        reader.read_data(1 << 20, h.name)))
        return out
    whole = entries(len(data))
    assert [e[0] for e in whole][-1] == "dir/link" and whole[2][5] == b"\3" * 511
    # PAX mtime alone (the times-only reading) and with a path record (the full one)
    assert whole[0][0] == "dir/file0" and whole[0][3] == 1_700_000_000_250_000_000
    assert whole[1][0] == "dir/éfile1" and whole[1][3] == 1_700_000_001_250_000_000
    assert whole[-1][4] == "x" * 150
    for step in (1, 7, 100, 511, 512, 513, 1000, 4096):
        assert entries(step) == whole, step
