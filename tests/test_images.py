import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from refine_agent.errors import InputError
from refine_agent.images import Image, MemoryImageBank, decode_image, load_image


def _png_bytes(img: PILImage.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_hash_depends_on_pixels_only(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    a = Image(arr)
    a.save(tmp_path / "a.png")
    b = load_image(tmp_path / "a.png")
    assert a == b and a.sha256 == b.sha256
    assert Image(arr[:, ::-1]).sha256 != a.sha256
    assert not a.array.flags.writeable


def test_image_rejects_wrong_arrays() -> None:
    with pytest.raises(ValueError):
        Image(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        Image(np.zeros((4, 4, 3), dtype=np.float32))


def test_bank_is_content_addressed() -> None:
    bank = MemoryImageBank()
    a = Image(np.zeros((2, 2, 3), np.uint8))
    assert bank.put(a) == bank.put(Image(np.zeros((2, 2, 3), np.uint8)))
    assert len(bank) == 1 and bank.get(a.sha256) is a


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(p)


def test_not_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("hello, I am text")
    with pytest.raises(InputError, match="not an image"):
        load_image(p)


def test_truncated_image(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _png_bytes(PILImage.fromarray(arr))
    p = tmp_path / "cut.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(p)


def test_corrupt_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    PILImage.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    data[200:400] = b"\x00" * 200
    p = tmp_path / "bad.jpg"
    p.write_bytes(bytes(data[:300]))
    with pytest.raises(InputError):
        load_image(p)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, bit_depth: int, raw_rows: bytes) -> bytes:
    """A hand-made RGB PNG, for headers and depths Pillow will not write."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw_rows))
            + _chunk(b"IEND", b""))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: what a decompression bomb looks like before decoding."""
    return _png(width, height, 8, b"\x00" * 16)


@pytest.mark.parametrize("size", [(20000, 20000), (100000, 100000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, size: tuple[int, int]) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(*size))
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(p)


def test_pixel_limit_is_configurable() -> None:
    data = _png_bytes(PILImage.new("RGB", (100, 100)))
    with pytest.raises(InputError, match="--max-pixels"):
        decode_image(data, name="x.png", max_pixels=5000)
    assert decode_image(data, max_pixels=10000).size == (100, 100)


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16)
    img = decode_image(_png_bytes(PILImage.fromarray(arr)))
    assert img.array[0, :, 0].tolist() == [0, 128, 255]


def test_sixteen_bit_rgb_png() -> None:
    # Pillow has no 48-bit write mode; build the PNG by hand: 1x2 pixels, 16 bits per channel.
    row = b"\x00" + struct.pack(">HHHHHH", 65535, 0, 0, 0, 32896, 65535)
    img = decode_image(_png(2, 1, 16, row))
    assert img.array[0].tolist() == [[255, 0, 0], [0, 128, 255]]


def test_cmyk_is_converted(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    PILImage.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, format="JPEG", quality=95)
    img = load_image(p)
    r, g, b = img.array[8, 8].tolist()
    assert r > 200 and g < 60 and b < 60


def test_palette_and_transparency_are_composited_on_white() -> None:
    pal = PILImage.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    assert decode_image(_png_bytes(pal)).array[0, 0].tolist() == [255, 0, 0]
    pal.info["transparency"] = 1
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=1)
    assert decode_image(buf.getvalue()).array[0, 0].tolist() == [255, 255, 255]
    rgba = PILImage.new("RGBA", (4, 4), (0, 0, 255, 0))
    assert decode_image(_png_bytes(rgba)).array[0, 0].tolist() == [255, 255, 255]
    half = PILImage.new("RGBA", (4, 4), (0, 0, 0, 128))
    assert decode_image(_png_bytes(half)).array[0, 0].tolist() == [127, 127, 127]
    la = PILImage.new("LA", (4, 4), (0, 255))
    assert decode_image(_png_bytes(la)).array[0, 0].tolist() == [0, 0, 0]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = (255, 0, 0)  # left half red
    img = PILImage.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    p = tmp_path / "rot.jpg"
    img.save(p, format="JPEG", exif=exif, quality=95)
    out = load_image(p)
    assert out.size == (10, 20)  # width and height swapped
    top = out.array[:10].reshape(-1, 3).mean(axis=0)
    assert top[0] > 200 and top[1] < 60  # the red half is now on top
