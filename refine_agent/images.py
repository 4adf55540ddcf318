"""Images: an immutable RGB pixel array with a content hash, and safe loading of user files.

Every image inside refine-agent is 8-bit RGB. Loading normalises what users actually have on disk (EXIF
orientation, 16-bit, CMYK, palette, alpha) and rejects what cannot be trusted (empty, truncated, corrupt,
decompression bombs) with one clear line.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from .errors import InputError

# Pillow's own warning threshold (about 89 megapixels); users raise it with --max-pixels.
DEFAULT_MAX_PIXELS = 89_478_485


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
        """Write a PNG atomically (temp file + rename), so a killed process never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(self.png_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

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


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Load a user's image file as 8-bit RGB, honouring EXIF orientation."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p} is a directory; pass an image file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, name=str(p), max_pixels=max_pixels)
