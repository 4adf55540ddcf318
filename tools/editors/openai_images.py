"""``openai:MODEL`` editor (default ``gpt-image-1``): the OpenAI Images edit endpoint, or any server that
implements it. The result records the returned image, token usage and cost."""

from __future__ import annotations

import base64
import io
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from refine_agent.tools.api.chat import ClientPools
from refine_agent.tools.api.errors import classify
from refine_agent.tools.api.options import TRANSPORT_OPTIONS, APIOptions, Endpoints
from refine_agent.tools.api.pricing import image_cost
from refine_agent.tools.api.ratelimit import limiter_for

from refine_agent.errors import MissingExtraError, PermanentToolError, ToolError, TransientToolError
from refine_agent.images import Image, decode_image
from refine_agent.protocols import ToolBase
from refine_agent.runtime import bill
from refine_agent.types import EditRequest, EditResult, ToolKind, Usage


class ImageEditOptions(APIOptions):
    size: str = Field(default="auto", description="output size, e.g. 1024x1024, 1536x1024, or auto")
    quality: Literal["auto", "low", "medium", "high"] = Field(default="auto", description="rendering quality")
    input_fidelity: Literal["low", "high"] | None = Field(default=None, description="how closely to keep the input")
    n: int = Field(default=1, ge=1, le=10, description="images to make; the first is used, all are paid for")
    use_mask: bool = Field(default=True, description="send the request's mask (white = editable) when there is one")
    resize_to_source: bool = Field(default=True, description="resize the result to the input's size, so judges and "
                                   "masks line up")


def mask_png(mask: Image, size: tuple[int, int]) -> bytes:
    """OpenAI's mask convention: a PNG whose fully transparent pixels may be edited. Ours: white = editable."""
    from PIL import Image as PILImage

    m = mask.to_pil().convert("L").resize(size, PILImage.NEAREST)
    alpha = np.where(np.asarray(m) > 127, 0, 255).astype(np.uint8)
    rgba = np.dstack([np.zeros((*alpha.shape, 3), np.uint8), alpha])
    buf = io.BytesIO()
    PILImage.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


class OpenAIImageEditor(ToolBase[ImageEditOptions]):
    name: ClassVar[str] = "openai"
    kind: ClassVar[ToolKind] = "editor"
    summary: ClassVar[str] = "OpenAI Images edit endpoint (gpt-image-1 and compatible servers)"
    Options = ImageEditOptions
    runtime_only_options = TRANSPORT_OPTIONS

    def __init__(self, model: str = "gpt-image-1", options: Any = None) -> None:
        super().__init__(options)
        self.model = model
        self.name = f"openai:{model}"  # type: ignore[misc]
        self.endpoints = Endpoints("openai", self.options)
        try:
            import openai
        except ModuleNotFoundError:
            raise MissingExtraError("openai", "api", "the openai editor") from None
        self._pools = ClientPools(lambda: [openai.AsyncOpenAI(api_key=self.endpoints.key, base_url=u, max_retries=0,
                                                              timeout=self.options.timeout_s)
                                           for u in self.endpoints.urls])

    async def aclose(self) -> None:
        await self._pools.aclose()

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> OpenAIImageEditor:
        return cls(model or "gpt-image-1", options)

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        return {"name": self.name, "params": ident["params"]}

    async def edit(self, req: EditRequest) -> EditResult:
        o = self.options
        i = self.endpoints.pick()
        url = self.endpoints.urls[i]
        kwargs: dict[str, Any] = {"model": self.model, "prompt": req.instruction, "n": o.n, "size": o.size,
                                  "quality": o.quality, "image": ("image.png", req.image.png_bytes(), "image/png")}
        if o.input_fidelity is not None:
            kwargs["input_fidelity"] = o.input_fidelity
        if o.use_mask and req.mask is not None:
            kwargs["mask"] = ("mask.png", mask_png(req.mask, req.image.size), "image/png")
        if o.extra_body:
            kwargs["extra_body"] = o.extra_body
        limiter = limiter_for(url, o.rpm, o.tpm)
        if limiter is not None:
            await limiter.acquire(1000)
        try:
            resp = await self._pools.get()[i].images.edit(**kwargs)
        except ToolError:
            raise
        except Exception as exc:
            raise classify(exc, provider="openai", base_url=url, key_env=self.endpoints.key_env, model=self.model,
                           redact=self.endpoints.redact) from None
        if not hasattr(resp, "data"):
            raise TransientToolError(f"openai at {url} sent something that is not an images response")
        usage = self._usage(resp)
        bill(usage)  # billed even if the reply then proves unusable
        data = resp.data or []
        if not data or not getattr(data[0], "b64_json", None):
            raise PermanentToolError(f"openai at {url} returned no image for the edit")
        image = decode_image(base64.b64decode(data[0].b64_json), name=f"image from {url}")
        returned = image.size
        if o.resize_to_source and image.size != req.image.size:
            from PIL import Image as PILImage

            image = Image.from_pil(image.to_pil().resize(req.image.size, PILImage.LANCZOS))
        return EditResult(image=image, usage=usage, info={
            "model": self.model, "returned_size": list(returned), "n": len(data),
            "revised_prompt": getattr(data[0], "revised_prompt", None)})

    def _usage(self, resp: Any) -> Usage:
        u = getattr(resp, "usage", None)
        if u is None:
            return Usage()
        details = getattr(u, "input_tokens_details", None)
        text_in = int(getattr(details, "text_tokens", 0) or 0)
        image_in = int(getattr(details, "image_tokens", 0) or 0)
        out = int(getattr(u, "output_tokens", 0) or 0)
        o = self.options
        cost = image_cost(self.model, text_in, image_in, out, o.price_in, o.price_out)
        return Usage(input_tokens=int(getattr(u, "input_tokens", 0) or 0), output_tokens=out, cost_usd=cost)
