"""Judging masks (white = region of interest), as RefEdit-Bench's protocol uses them: semantic consistency
is judged on the source and the edit with everything outside the (dilated) target blacked out."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from refine_agent.images import Image


def mask_array(mask: Image, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask at ``size`` (width, height), from a white-on-black mask image of any size."""
    from PIL import Image as PILImage

    m = mask.to_pil().convert("L")
    if m.size != size:
        m = m.resize(size, PILImage.NEAREST)
    return np.asarray(m) > 127


def masked(image: Image, mask: Image, dilate_px: int = 0) -> Image:
    """``image`` with everything outside the mask (grown by ``dilate_px`` pixels) set to black."""
    keep = mask_array(mask, image.size)
    if dilate_px > 0:
        keep = ndimage.binary_dilation(keep, structure=np.ones((3, 3), bool), iterations=dilate_px)
    arr = np.array(image.array)
    arr[~keep] = 0
    return Image(arr)
