"""Hostile image files (issue 8 hardening): devices, FIFOs, folders and files too big to be an image.

An image is read only from a regular file no larger than ``MAX_IMAGE_BYTES`` (scaled by --max-pixels), checked
before a byte is read, and never more than the limit plus one byte is read. This holds for the CLI's inputs and
for every image a dataset row names. Nothing here reads a big file: "big" files are sparse, with the limit
lowered by monkeypatch, and a FIFO is only ever given to a subprocess with a timeout (or guarded by an alarm).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refine_agent.benchmarks.datasets import SampleError, load_dataset
from refine_agent.tools.synthetic.generate import write_dataset

from refine_agent import images
from refine_agent.errors import InputError
from refine_agent.images import DEFAULT_MAX_PIXELS, decode_image, load_image, max_image_bytes

from .conftest import changed, cli, cli_subprocess, error_line, snapshot

needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="POSIX files only")
SMALL_CAP = 64 << 10  # 64 KiB: the limit the tests lower MAX_IMAGE_BYTES to


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail (instead of hanging the suite) should an in-process test ever block on a FIFO."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError("blocked on a file: the FIFO guard is broken")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", SMALL_CAP)
    return SMALL_CAP


def _sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space and is never read whole by these tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _png(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "ds", 1, seed=1)
    return next((tmp_path / "ds" / "images").glob("*.png"))


# -- edit and refine: one line naming the path, exit 2, nothing written ------------------------------------------


@needs_posix
@pytest.mark.parametrize("role", ["edit source", "refine edited"])
def test_fifo_input_is_refused_without_hanging(tmp_path: Path, role: str) -> None:
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    args = (["edit", fifo, "make it blue"] if role == "edit source"
            else ["refine", _png(tmp_path), fifo, "make it blue"])
    before = snapshot(tmp_path)
    # A real process with a timeout: a regression hangs that process, not the suite.
    r = cli_subprocess(*args, "--out", tmp_path / "out", timeout=60)
    line = error_line(r.stdout + r.stderr, r.returncode, 2)
    assert str(fifo) in line and "FIFO" in line and "not a regular file" in line, line
    assert changed(before, snapshot(tmp_path)) == [] and not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_character_device_input_is_refused(tmp_path: Path) -> None:
    r = cli("edit", "/dev/null", "make it blue", "--out", tmp_path / "out")
    line = error_line(r.output, r.exit_code, 2)
    assert "/dev/null is a character device, not a regular file" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_symlink_to_a_device_is_refused_naming_the_link(tmp_path: Path) -> None:
    link = tmp_path / "photo.png"
    os.symlink("/dev/null", link)
    r = cli("refine", _png(tmp_path), link, "make it blue", "--out", tmp_path / "out")
    line = error_line(r.output, r.exit_code, 2)
    assert f"{link} is a character device, not a regular file" in line, line


def test_folder_named_like_an_image_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()
    r = cli("edit", tmp_path / "x.png", "make it blue", "--out", tmp_path / "out")
    line = error_line(r.output, r.exit_code, 2)
    assert str(tmp_path / "x.png") in line and "is a directory, not a regular file" in line, line


def test_file_over_the_byte_cap_is_refused_before_reading(tmp_path: Path, small_cap: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    big = _sparse(tmp_path / "big.png", 16 * small_cap)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(images.os, "read", counting_read)
    r = cli("edit", big, "make it blue", "--out", tmp_path / "out")
    line = error_line(r.output, r.exit_code, 2)
    assert str(big) in line and "1 MiB" in line and "64 KiB limit" in line and "--max-pixels" in line, line
    assert "internal error" not in line and "MemoryError" not in line
    assert reads == []  # refused from its size alone
    assert not (tmp_path / "out").exists()


def test_file_just_under_the_cap_still_loads(tmp_path: Path, small_cap: int) -> None:
    png = _png(tmp_path)
    assert png.stat().st_size <= small_cap
    assert load_image(png).size[0] > 0


def test_file_growing_while_read_stops_at_the_cap_plus_one_byte() -> None:
    # A pipe stands for a file whose size said 10 bytes and which kept growing: 300 bytes are there.
    r, w = os.pipe()
    try:
        os.write(w, b"x" * 300)
        os.close(w)
        with pytest.raises(InputError, match=r"grew while being read to more than the 100 bytes limit"):
            images._read_bounded(r, 10, 100, "grow.png")
        assert len(os.read(r, 1000)) == 300 - 101  # no more than limit + 1 bytes were taken
    finally:
        os.close(r)


def test_in_memory_bytes_over_the_cap_are_refused(small_cap: int) -> None:
    with pytest.raises(InputError, match=r"row 3 input_image is 128 KiB, larger than the 64 KiB limit"):
        decode_image(b"\x89PNG" + bytes(2 * small_cap - 4), name="row 3 input_image")


def test_byte_cap_grows_with_max_pixels(small_cap: int) -> None:
    assert max_image_bytes() == max_image_bytes(1000) == small_cap
    assert max_image_bytes(2 * DEFAULT_MAX_PIXELS) == 2 * small_cap
    images.MAX_IMAGE_BYTES = 1 << 30  # monkeypatch restores the 64 KiB afterwards
    # The default holds the bulkiest ordinary encoding at the pixel limit: an uncompressed 16-bit RGBA TIFF.
    assert max_image_bytes() >= 8 * DEFAULT_MAX_PIXELS


# -- datasets: a clear load_error record per row, never internal_error or "does not exist" ------------------------


def _bench_records(run: Path) -> dict[str, tuple[str, str | None]]:
    db = sqlite3.connect(f"file:{run / 'records.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT sample_id, status, error FROM samples").fetchall()
    finally:
        db.close()
    return {sid: (status, error) for sid, status, error in rows}


def _hostile_manifest(tmp_path: Path) -> Path:
    """ds/m.jsonl: a good row, then rows naming a FIFO, /dev/null, a folder, an over-cap file and a link to
    /dev/null."""
    write_dataset(tmp_path / "ds", 1, seed=1)
    good = json.loads((tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0])
    os.mkfifo(tmp_path / "ds" / "fifo.png")
    (tmp_path / "ds" / "dir.png").mkdir()
    _sparse(tmp_path / "ds" / "big.png", 16 * SMALL_CAP)
    os.symlink("/dev/null", tmp_path / "ds" / "null.png")
    rows = [good] + [good | {"id": sid, "source": src} for sid, src in
                     [("fifo", "fifo.png"), ("device", "/dev/null"), ("dir", "dir.png"), ("big", "big.png"),
                      ("link", "null.png")]]
    path = tmp_path / "ds" / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


EXPECTED = {"fifo": "is a FIFO (named pipe), not a regular file", "device": "is a character device, not a regular file",
            "dir": "is a directory, not a regular file", "big": "is 1 MiB, larger than the 64 KiB limit",
            "link": "is a character device, not a regular file"}


@needs_posix
def test_dataset_rows_naming_special_files_are_row_errors(tmp_path: Path, small_cap: int, alarm: None) -> None:
    items = list(load_dataset(f"jsonl:{_hostile_manifest(tmp_path)}"))
    errors = {i.id: i.error for i in items if isinstance(i, SampleError)}
    assert set(errors) == {"fifo", "device", "dir", "link"}  # the big file exists: refused when it is loaded
    for sid, error in errors.items():
        assert EXPECTED[sid] in error and "does not exist" not in error, error
    big = next(i for i in items if i.id == "big")
    with pytest.raises(InputError, match=EXPECTED["big"]):
        big.source.load()  # type: ignore[union-attr]


@needs_posix
def test_bench_records_special_and_over_cap_files_as_load_errors(tmp_path: Path, small_cap: int,
                                                                 alarm: None) -> None:
    manifest = _hostile_manifest(tmp_path)
    before = snapshot(tmp_path / "ds")
    r = cli("bench", f"jsonl:{manifest}", "--run-dir", tmp_path / "run", "--budgets", "0,1")
    assert r.exit_code == 0, r.output  # one sample was scored
    records = _bench_records(tmp_path / "run")
    assert len(records) == 6 and sum(status == "done" for status, _ in records.values()) == 1
    for sid, expected in EXPECTED.items():
        status, error = records[sid]
        assert status == "error" and error is not None and expected in error, (sid, error)
        assert "internal error" not in error and "does not exist" not in error
    assert "load_error 5" in r.output and "internal_error" not in r.output
    assert changed(before, snapshot(tmp_path / "ds")) == []


# -- the dataset's own files: a device or FIFO is one error up front, never read ------------------------------------


@needs_posix
@pytest.mark.parametrize("kind, make, shown", [
    ("jsonl", lambda d: os.mkfifo(d / "m.jsonl") or d / "m.jsonl", "m.jsonl is a FIFO (named pipe)"),
    ("jsonl", lambda d: os.mkfifo(d / "manifest.jsonl") or d, "manifest.jsonl is a FIFO (named pipe)"),
    ("jsonl", lambda d: Path("/dev/null"), "/dev/null is a character device"),
    ("re-edit", lambda d: os.mkfifo(d / "data.json") or d, "data.json is a FIFO (named pipe)"),
    ("refedit", lambda d: (d / "data").mkdir() or os.mkfifo(d / "data" / "test-0.parquet") or d,
     "test-0.parquet is a FIFO (named pipe)"),
    ("iebench", lambda d: Path("/dev/null"), "/dev/null is a character device"),
])
def test_dataset_file_that_is_no_regular_file_is_one_error(tmp_path: Path, alarm: None, kind: str, make: Any,
                                                           shown: str) -> None:
    (tmp_path / "ds").mkdir()
    target = make(tmp_path / "ds")
    r = cli("bench", f"{kind}:{target}", "--run-dir", tmp_path / "run")
    line = error_line(r.output, r.exit_code, 2)
    assert shown in line and "not a regular file" in line and "internal error" not in line, line
