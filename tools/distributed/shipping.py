"""How a request's images travel to an actor: as arrays, each put in the object store once and passed by reference
after that, so a picture leaves the driver once however many actors (editor, judge, critic) read it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from refine_agent.images import Image

IMAGE_FIELDS = ("image", "source", "edited", "mask")  # the request fields that hold an Image
INLINE_BYTES = 100_000  # smaller arrays go by value inside the call, as Ray inlines small objects anyway
KEEP = 256  # references kept: every image of the samples in flight, with room to spare


@dataclass(frozen=True)
class Slot:
    """Stands for an image in a request sent to an actor: the index of the call argument that carries it."""

    index: int


class ImageRefs:
    """Object-store references to the images sent so far, by content hash, least recently used dropped first."""

    def __init__(self, put: Any, keep: int = KEEP) -> None:
        self._put = put
        self._keep = keep
        self._refs: OrderedDict[str, Any] = OrderedDict()

    def ship(self, image: Image) -> Any:
        """What to pass for ``image``: the Image itself when small, else a reference to its array."""
        if image.array.nbytes < INLINE_BYTES:
            return image
        ref = self._refs.get(image.sha256)
        if ref is None:
            ref = self._refs[image.sha256] = self._put(image.array)
            while len(self._refs) > self._keep:
                self._refs.popitem(last=False)
        else:
            self._refs.move_to_end(image.sha256)
        return ref

    def forget(self) -> None:
        """Drop every reference (after an object was lost: the next call puts its images again)."""
        self._refs.clear()


def pack(request: Any, ship: Any) -> tuple[Any, list[Any]]:
    """The request with its images replaced by slots, and the images (or references) to pass beside it: Ray
    resolves references given as call arguments before the actor method runs, so the actor reads arrays."""
    update: dict[str, Slot] = {}
    images: list[Any] = []
    for name in IMAGE_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, Image):
            update[name] = Slot(len(images))
            images.append(ship(value))
    return (request.model_copy(update=update) if update else request), images


def unpack(request: Any, images: tuple[Any, ...]) -> Any:
    """The request as the driver made it, its images rebuilt from what arrived (arrays, or Images sent whole)."""
    update: dict[str, Image] = {}
    for name in IMAGE_FIELDS:
        slot = getattr(request, name, None)
        if isinstance(slot, Slot):
            value = images[slot.index]
            update[name] = value if isinstance(value, Image) else Image(value)
    return request.model_copy(update=update) if update else request
