"""Images: an immutable RGB pixel array with a content hash, and safe loading of user files.

Every image inside refine-agent is 8-bit RGB. Loading normalises what users actually have on disk (EXIF
orientation, 16-bit, CMYK, palette, alpha) and rejects what cannot be trusted (empty, truncated, corrupt,
decompression bombs, devices, FIFOs and folders, files larger than any image we accept) with one clear line.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from .atomic import write_atomic
from .errors import InputError

# Pillow's own warning threshold (about 89 megapixels); users raise it with --max-pixels.
DEFAULT_MAX_PIXELS = 89_478_485

# The largest image file (or in-memory encoded image) read at the default pixel limit: 1 GiB. The bulkiest
# ordinary encoding of an image at that limit, an uncompressed 16-bit RGBA TIFF, takes 8 bytes a pixel, so
# 89,478,485 px x 8 B = 683 MiB; 1 GiB leaves about 340 MiB for headers, ICC/EXIF/XMP blocks and thumbnails.
# Anything bigger cannot be an image we would accept, so it is refused before a byte is read (a sparse or
# device file would otherwise be read whole: /dev/zero never ends). The limit grows in proportion when the
# user raises --max-pixels (see ``max_image_bytes``). Tests monkeypatch this constant.
MAX_IMAGE_BYTES = 1 << 30
_READ_CHUNK = 1 << 20  # read size past the size the file claims (a file growing while read, /proc files)
_MAX_READ = 1 << 30  # one os.read at most (Linux returns at most about 2 GiB a call)


class Image:
    """An immutable 8-bit RGB image (H x W x 3) identified by the sha256 of its pixels.

    The hash covers the pixels and shape only, not an encoding, so the same picture saved by two
    Pillow versions has the same id.
    """

    __slots__ = ("_array", "_sha256")

    def __init__(self, array: np.ndarray) -> None:
        arr = np.asarray(array)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"Image needs a uint8 array of shape (H, W, 3), got {arr.dtype} {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError("Image has zero width or height")
        arr = np.array(arr, copy=True, order="C")
        arr.flags.writeable = False
        self._array = arr
        self._sha256: str | None = None

    def __copy__(self) -> Image:
        return self  # immutable: a deep copy of a record that holds an image shares the pixels

    def __deepcopy__(self, memo: dict[int, object]) -> Image:
        return self

    @property
    def array(self) -> np.ndarray:
        """The read-only pixel array. Copy it before changing pixels."""
        return self._array

    @property
    def width(self) -> int:
        return int(self._array.shape[1])

    @property
    def height(self) -> int:
        return int(self._array.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            h = hashlib.sha256(b"rgb8:%dx%d:" % (self.height, self.width))
            h.update(self._array.tobytes())
            self._sha256 = h.hexdigest()
        return self._sha256

    @classmethod
    def from_pil(cls, img: PILImage.Image) -> Image:
        return cls(np.asarray(to_rgb(img)))

    def to_pil(self) -> PILImage.Image:
        return PILImage.fromarray(self._array, "RGB")

    def png_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG", compress_level=3)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG atomically and durably (``write_atomic``), so a killed process never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, self.png_bytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"Image({self.width}x{self.height}, sha256={self.sha256[:12]})"


class ImageBank(Protocol):
    """Where a run keeps the images it makes, by content hash."""

    def put(self, image: Image) -> str: ...

    def get(self, sha256: str) -> Image: ...


class MemoryImageBank:
    """An in-memory ImageBank for single edits and tests."""

    def __init__(self) -> None:
        self._images: dict[str, Image] = {}

    def put(self, image: Image) -> str:
        self._images.setdefault(image.sha256, image)
        return image.sha256

    def get(self, sha256: str) -> Image:
        return self._images[sha256]

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._images

    def __len__(self) -> int:
        return len(self._images)


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Convert any Pillow mode to 8-bit RGB. Transparency is composited onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return PILImage.fromarray(_high_depth_to_uint8(img), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_to_uint8(img: PILImage.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grey image to 0..255 instead of clipping it."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        scale = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0 / 255.0
        return np.clip(np.nan_to_num(arr) * scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    # 16-bit data (also what Pillow gives as mode "I" for 16-bit PNGs) spans 0..65535.
    peak = 65535 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255
    return np.clip((arr * 255 + peak // 2) // peak, 0, 255).astype(np.uint8)


_PIL_LIMIT_LOCK = threading.Lock()


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow open images up to twice ``max_pixels`` when the user raised the limit above its default.

    Pillow refuses images above twice its own MAX_IMAGE_PIXELS before we can apply ours; that global is
    raised only for the duration of the open, under a lock, and only when asked for.
    """
    default = PILImage.MAX_IMAGE_PIXELS
    if default is None or max_pixels <= default:
        yield
        return
    with _PIL_LIMIT_LOCK:
        PILImage.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            PILImage.MAX_IMAGE_PIXELS = default


def decode_image(data: bytes, *, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Decode image bytes into an Image, raising InputError with one clear line on bad input."""
    if not data:
        raise InputError(f"{name} is empty (0 bytes); pass a PNG, JPEG or WebP image")
    limit = max_image_bytes(max_pixels)
    if len(data) > limit:
        raise _too_many_bytes(name, len(data), limit)
    try:
        with warnings.catch_warnings(), _pillow_limit(max_pixels):
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            img = PILImage.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise _too_big(name, w, h, max_pixels)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return Image.from_pil(img)
    except InputError:
        raise
    except PILImage.DecompressionBombError as exc:
        raise InputError(
            f"{name} is refused as a possible decompression bomb ({exc}); "
            "raise the limit with --max-pixels if the image is genuine"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{name} is not an image Pillow can read; pass a PNG, JPEG or WebP image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name} is truncated or corrupt ({exc}); re-export or re-download it") from exc


def _too_big(name: str, w: int, h: int, limit: int) -> InputError:
    return InputError(
        f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the {limit / 1e6:.0f} MP limit, "
        "and may be a decompression bomb; raise the limit with --max-pixels if the image is genuine"
    )


def max_image_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The largest image file accepted: ``MAX_IMAGE_BYTES``, scaled up in proportion to a raised pixel limit."""
    if max_pixels <= DEFAULT_MAX_PIXELS:
        return MAX_IMAGE_BYTES
    return -(-MAX_IMAGE_BYTES * max_pixels // DEFAULT_MAX_PIXELS)


def _byte_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if n % size == 0 else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _too_many_bytes(name: str, size: int | None, limit: int, done: str = "") -> InputError:
    what = f"is {_byte_text(size)}, larger" if size is not None else "grew while being read to more"
    return InputError(f"{name} {what} than the {_byte_text(limit)} limit for an image file (the limit grows with "
                      f"--max-pixels: raise that if the image is genuine){done}")


def non_regular_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` is when it is not a regular file ("a directory", "a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check_regular(p: Path, mode: int) -> None:
    kind = non_regular_kind(mode)
    if kind is not None:
        raise InputError(f"{p} is {kind}, not a regular file; pass an image file")


def read_image_file(path: str | os.PathLike[str], *, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default ``MAX_IMAGE_BYTES``), or InputError with
    one line naming it.

    Devices, FIFOs, sockets and folders are refused before they are read (a FIFO is opened without blocking,
    so one nobody writes to cannot hang us), a file over the limit before a byte is read, and no more than
    ``limit + 1`` bytes are ever read, so a file that grows while it is read cannot exhaust memory.
    """
    p = Path(path)
    limit = max_image_bytes() if limit is None else limit
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, ValueError) as exc:  # no permission on a folder, a name too long, a NUL byte
        raise InputError(f"{p}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    _check_regular(p, st.st_mode)
    if st.st_size > limit:
        raise _too_many_bytes(str(p), st.st_size, limit, "; refused without reading it")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)  # what was opened, should the path have been swapped since the check above
        _check_regular(p, st.st_mode)
        if st.st_size > limit:
            raise _too_many_bytes(str(p), st.st_size, limit, "; refused without reading it")
        return _read_bounded(fd, st.st_size, limit, str(p))
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_bounded(fd: int, expected: int, limit: int, name: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        # The size the file claims plus one byte (to see whether it grew), else small steps; never past limit+1.
        want = min(limit + 1 - total, max(expected - total + 1, _READ_CHUNK), _MAX_READ)
        chunk = os.read(fd, want)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    if total > limit:
        raise _too_many_bytes(name, None, limit)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Load a user's image file as 8-bit RGB, honouring EXIF orientation.

    Only a regular file no larger than ``max_image_bytes(max_pixels)`` is read (see ``read_image_file``).
    """
    p = Path(path)
    data = read_image_file(p, limit=max_image_bytes(max_pixels))
    return decode_image(data, name=str(p), max_pixels=max_pixels)
