"""pipelines.tar: the same bytes tarfile writes, readable by tarfile, for short and long names."""
import io
import tarfile

import pytest

from pipelines.tar import TarWriter, member_header, member_info

MEMBERS = [
    ("3dpw_test_courtyard-basketball-00_000012_p0.jpg", b"\xff\xd8" + bytes(range(256)) * 7),
    ("3dpw_test_courtyard-basketball-00_000012_p0.npz", b"PK" + b"x" * 511),  # exactly one block
    ("empty.txt", b""),
    ("k" * 100 + ".npz", b"name of exactly 104 bytes: gets a pax header"),
]


def _tarfile_bytes(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            tar.addfile(member_info(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


def _writer_bytes(members) -> bytes:
    buf = io.BytesIO()
    with TarWriter(buf) as tar:
        for name, data in members:
            tar.add(name, data)
    assert tar.offset == len(buf.getvalue())
    return buf.getvalue()


@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_writes_what_tarfile_writes(n):
    assert _writer_bytes(MEMBERS[:n]) == _tarfile_bytes(MEMBERS[:n])


def test_tarfile_reads_it_back():
    with tarfile.open(fileobj=io.BytesIO(_writer_bytes(MEMBERS)), mode="r|") as tar:
        got = [(m.name, m.mode, m.mtime, m.uid, tar.extractfile(m).read()) for m in tar]
    assert got == [(name, 0o644, 0, 0, data) for name, data in MEMBERS]


def test_header_is_one_block_with_a_valid_checksum():
    header = member_header("a.jpg", 1234)
    assert len(header) == 512
    info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")  # checks the checksum
    assert (info.name, info.size, info.type) == ("a.jpg", 1234, tarfile.REGTYPE)
