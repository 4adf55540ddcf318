"""The synthetic scene model: a pale background and 2-6 flat shapes on a 3x3 grid, rendered without
anti-aliasing so that every pixel is exactly one named colour."""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw
from pydantic import BaseModel, Field

from .palette import BACKGROUND_COLOURS, SHAPE_COLOURS, rgb

CANVAS = 192
GRID = 3
CELL = CANVAS // GRID
EXTENT = {"small": 22, "large": 40}  # bounding-box side in pixels
SIZE_SPLIT = (EXTENT["small"] + EXTENT["large"]) / 2  # detection threshold between the two sizes
MAX_JITTER = 8

ShapeName = Literal["circle", "square", "triangle"]
SizeName = Literal["small", "large"]
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "middle", "right")


def cell_name(cell: tuple[int, int]) -> str:
    r, c = cell
    return "center" if (r, c) == (1, 1) else f"{ROWS[r]}-{COLS[c]}"


def cell_of(x: float, y: float, width: int = CANVAS, height: int = CANVAS) -> tuple[int, int]:
    col = min(GRID - 1, max(0, int(x * GRID / width)))
    row = min(GRID - 1, max(0, int(y * GRID / height)))
    return row, col


def cell_centre(cell: tuple[int, int]) -> tuple[int, int]:
    r, c = cell
    return c * CELL + CELL // 2, r * CELL + CELL // 2


class Shape(BaseModel):
    shape: ShapeName
    colour: str
    size: SizeName
    cx: int
    cy: int

    @property
    def cell(self) -> tuple[int, int]:
        return cell_of(self.cx, self.cy)

    def describe(self) -> str:
        return f"{self.size} {self.colour} {self.shape} in the {cell_name(self.cell)}"


class Scene(BaseModel):
    background: str
    shapes: list[Shape] = Field(default_factory=list)
    width: int = CANVAS
    height: int = CANVAS


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, extent: float,
               colour: tuple[int, int, int]) -> None:
    """Draw one flat shape centred at (cx, cy) whose bounding box is ``extent`` pixels wide."""
    half = extent / 2.0
    x0, y0, x1, y1 = cx - half, cy - half, cx + half - 1, cy + half - 1
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x0, y1), (x1, y1)], fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def paint_shape(arr: np.ndarray, shape: str, cx: float, cy: float, extent: float,
                colour: tuple[int, int, int]) -> None:
    """Draw a shape into an RGB uint8 array in place."""
    img = PILImage.fromarray(arr, "RGB")
    draw_shape(ImageDraw.Draw(img), shape, cx, cy, extent, colour)
    arr[...] = np.asarray(img)


def render(scene: Scene) -> np.ndarray:
    img = PILImage.new("RGB", (scene.width, scene.height), rgb(scene.background))
    draw = ImageDraw.Draw(img)
    for s in scene.shapes:
        draw_shape(draw, s.shape, s.cx, s.cy, EXTENT[s.size], rgb(s.colour))
    return np.array(img)


assert not set(SHAPE_COLOURS) & set(BACKGROUND_COLOURS)
