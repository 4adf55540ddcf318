"""Find the background, the objects and the artifacts of a synthetic scene from its pixels alone.

Used by the ``sim`` editor (to find what an instruction refers to) and by the ``verify`` judge (to compare
source and edited scenes). Neither ever sees the generator's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .palette import (
    BACKGROUND_COLOURS,
    COLOUR_NAMES,
    PALETTE_KEYS,
    SHAPE_COLOURS,
    UNKNOWN,
    label_pixels,
    pack,
)
from .scene import SIZE_SPLIT, cell_name, cell_of
from .snap import looks_like_scene, snap_labels

_SHAPE_IDX = np.array([COLOUR_NAMES.index(n) for n in SHAPE_COLOURS])
_EIGHT = np.ones((3, 3), dtype=bool)
MIN_OBJECT_AREA = 30  # smaller specks of shape colours are debris (artifacts), not objects


@dataclass
class DetectedObject:
    label: int
    shape: str  # circle | square | triangle | irregular
    colour: str  # the majority colour
    colours: dict[str, float]
    size: str
    extent: float
    area: int
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    cx: float
    cy: float
    fill: float

    @property
    def cell(self) -> tuple[int, int]:
        return cell_of(self.cx, self.cy)

    @property
    def purity(self) -> float:
        return self.colours.get(self.colour, 0.0)

    @property
    def regular(self) -> bool:
        return self.shape != "irregular" and self.purity >= 0.95

    def describe(self) -> dict[str, object]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "cell": list(self.cell),
                "area_name": cell_name(self.cell)}


@dataclass
class Cluster:
    bbox: tuple[int, int, int, int]
    pixels: int

    @property
    def cell(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.bbox
        return cell_of((x0 + x1) / 2, (y0 + y1) / 2)


@dataclass
class DetectedScene:
    width: int
    height: int
    background: str
    background_colours: dict[str, float]
    objects: list[DetectedObject]
    components: np.ndarray  # int label image of objects (0 = none)
    artifacts: np.ndarray  # bool mask of artifact pixels (unknown colours and debris)
    clusters: list[Cluster] = field(default_factory=list)

    def mask(self, obj: DetectedObject) -> np.ndarray:
        return self.components == obj.label

    @property
    def background_mask(self) -> np.ndarray:
        return (self.components == 0) & ~self.artifacts

    @property
    def artifact_pixels(self) -> int:
        return int(self.artifacts.sum())


def is_scene(arr: np.ndarray, min_exact: float = 0.85) -> bool:
    """True if the image looks like a synthetic scene: mostly exact palette colours (or, once compressed or
    resampled, near-palette colours that snapping explains), pale border."""
    if arr.ndim != 3 or min(arr.shape[:2]) < 16:
        return False
    exact = np.isin(pack(arr), PALETTE_KEYS).mean()
    if exact < min_exact and not looks_like_scene(arr):
        return False
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    labels = label_pixels(border[None])[0]
    labels = labels[labels != UNKNOWN]
    if labels.size == 0:
        return False
    # argmax breaks ties by palette order, so the answer never depends on hashing or iteration order
    return COLOUR_NAMES[int(np.bincount(labels, minlength=len(COLOUR_NAMES)).argmax())] in BACKGROUND_COLOURS


def _classify(mask: np.ndarray) -> tuple[str, float]:
    """Shape of one object from its mask (cropped to its bounding box): fill ratio and profile."""
    h, w = mask.shape
    fill = float(mask.sum()) / float(w * h)
    if not 0.8 <= w / h <= 1.25 or min(w, h) < 6:
        return "irregular", fill
    widths = mask.sum(axis=1).astype(float)
    q = max(1, h // 4)
    top, bottom = widths[:q].mean(), widths[-q:].mean()
    if fill >= 0.9:
        return "square", fill
    if 0.68 <= fill < 0.9 and abs(top - bottom) <= 0.25 * w:
        return "circle", fill
    if 0.4 <= fill < 0.66 and top < 0.6 * bottom:
        return "triangle", fill
    return "irregular", fill


def detect(arr: np.ndarray) -> DetectedScene:
    h, w = arr.shape[:2]
    labels = snap_labels(arr)
    unknown = labels == UNKNOWN
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border = border[border != UNKNOWN]
    bg_idx = int(np.bincount(border, minlength=len(COLOUR_NAMES)).argmax()) if border.size else 0

    foreground = np.isin(labels, _SHAPE_IDX)
    components, n = ndimage.label(foreground, structure=_EIGHT)
    objects: list[DetectedObject] = []
    debris = np.zeros_like(unknown)
    for lab, slc in enumerate(ndimage.find_objects(components), start=1):
        if slc is None:
            continue
        crop = components[slc] == lab
        area = int(crop.sum())
        if area < MIN_OBJECT_AREA:
            debris[slc] |= crop
            continue
        counts = np.bincount(labels[slc][crop], minlength=len(COLOUR_NAMES))
        colours = {COLOUR_NAMES[i]: float(c) / area for i, c in enumerate(counts) if c}
        shape, fill = _classify(crop)
        ys, xs = np.nonzero(crop)
        extent = float(max(crop.shape))
        objects.append(DetectedObject(
            label=lab, shape=shape, colour=max(colours, key=colours.__getitem__), colours=colours,
            size="small" if extent < SIZE_SPLIT else "large", extent=extent, area=area,
            bbox=(slc[1].start, slc[0].start, slc[1].stop, slc[0].stop),
            cx=float(xs.mean() + slc[1].start), cy=float(ys.mean() + slc[0].start), fill=fill,
        ))
    components[debris] = 0
    artifacts = unknown | debris

    rest = (components == 0) & ~artifacts
    rest_counts = np.bincount(labels[rest], minlength=len(COLOUR_NAMES)) if rest.any() else np.zeros(1)
    total = float(rest_counts.sum()) or 1.0
    bg_colours = {COLOUR_NAMES[i]: float(c) / total for i, c in enumerate(rest_counts) if c}
    return DetectedScene(width=w, height=h, background=COLOUR_NAMES[bg_idx], background_colours=bg_colours,
                         objects=objects, components=components, artifacts=artifacts,
                         clusters=_clusters(artifacts))


def _clusters(artifacts: np.ndarray) -> list[Cluster]:
    if not artifacts.any():
        return []
    # Specks a few pixels apart belong to one smudge.
    grown = ndimage.binary_dilation(artifacts, structure=_EIGHT, iterations=3)
    lab, _ = ndimage.label(grown, structure=_EIGHT)
    out = []
    for i, slc in enumerate(ndimage.find_objects(lab), start=1):
        if slc is None:
            continue
        pixels = int((artifacts[slc] & (lab[slc] == i)).sum())
        if pixels:
            out.append(Cluster(bbox=(slc[1].start, slc[0].start, slc[1].stop, slc[0].stop), pixels=pixels))
    return sorted(out, key=lambda c: -c.pixels)
