"""``diffusers:PATH`` editor: an open-weight editing pipeline (InstructPix2Pix, Qwen-Image-Edit, FLUX Kontext,
...) on the user's own GPUs, with dynamic batching across concurrent edits and one replica per device.

PATH is a local pipeline folder or a repo id in the user's Hugging Face cache. Everything that can be
checked without weights is checked when the editor is built; the weights load once per process (the model
pool), on ``load()`` or the first edit.
"""

from __future__ import annotations

from typing import Any, ClassVar

from refine_agent.errors import ConfigError
from refine_agent.images import Image
from refine_agent.pool import ModelKey, model_pool
from refine_agent.protocols import ToolBase
from refine_agent.types import EditRequest, EditResult, ToolKind

from .folder import read, resolve
from .loading import plan
from .service import Generated, Job, PipelineService
from .settings import RUNTIME_ONLY, DiffusersOptions, Generation


class DiffusersEditor(ToolBase[DiffusersOptions]):
    name: ClassVar[str] = "diffusers"
    kind: ClassVar[ToolKind] = "editor"
    summary: ClassVar[str] = "open-weight editing pipeline on your GPUs (diffusers:PATH), with dynamic batching"
    Options = DiffusersOptions
    runtime_only_options = RUNTIME_ONLY

    def __init__(self, path: str, options: Any = None) -> None:
        super().__init__(options)
        self.name = f"diffusers:{path}"  # type: ignore[misc]
        folder = read(resolve(path, revision=self.options.revision, allow_download=self.options.allow_download))
        self.plan = plan(folder, self.options)
        adapter = self.plan.adapter
        self.max_batch = self.options.max_batch_size or adapter.default_batch()
        if self.max_batch > adapter.max_batch:
            raise ConfigError(f"{adapter.class_name} takes {adapter.max_batch} edit(s) per call; set "
                              f"max_batch_size to at most {adapter.max_batch}")
        self._service: PipelineService | None = None

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> DiffusersEditor:
        if not model:
            raise ConfigError("the diffusers editor needs a pipeline folder: --editor diffusers:PATH")
        return cls(model, options)

    # -- hooks the runtime reads ---------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        # a batch for every replica, and as many again waiting, so the next batch fills while one runs
        return 2 * self.max_batch * len(self.plan.devices)

    def model_key(self) -> ModelKey:
        """What defines the loaded replicas: editors with equal keys share them (and one limiter)."""
        o, p = self.options, self.plan
        loading = (f"diffusers|{p.adapter.class_name}|{o.pipeline or o.custom_pipeline or ''}|"
                   f"scheduler={o.scheduler}|offload={o.offload}|tiling={o.vae_tiling}|slicing={o.vae_slicing}")
        return ModelKey(path=str(p.folder.path), revision=p.folder.fingerprint, dtype=p.dtype,
                        device=",".join(p.devices), kind=loading)

    def limiter_key(self) -> tuple[ModelKey, int]:
        # editors on one loaded pipeline with the same batch size share a limiter (its size is their capacity)
        return self.model_key(), self.max_batch

    def identity(self) -> dict[str, Any]:
        params = super().identity()["params"]
        params.update(path=str(self.plan.folder.path), fingerprint=self.plan.folder.fingerprint,
                      pipeline_class=self.plan.adapter.class_name, dtype=self.plan.dtype,
                      defaults=self.plan.adapter.defaults)
        return {"name": "diffusers", "params": params}

    async def load(self) -> None:
        if self._service is None:
            async def start() -> PipelineService:
                return await PipelineService.start(self.plan)

            self._service = await model_pool().aget(self.model_key(), start)

    # -- editing -------------------------------------------------------------------------------------------
    async def generate(self, req: EditRequest) -> Generated:
        """The edit's float pixels and its batch, before 8-bit rounding (``edit`` builds on it)."""
        await self.load()
        assert self._service is not None
        o = self.options
        gen = Generation(num_inference_steps=o.num_inference_steps, guidance_scale=o.guidance_scale,
                         image_guidance_scale=o.image_guidance_scale, true_cfg_scale=o.true_cfg_scale,
                         negative_prompt=o.negative_prompt, max_area=o.max_area, condition_area=o.condition_area,
                         output_size=o.output_size, input_size=req.image.size, max_batch=self.max_batch,
                         wait_s=o.batch_wait_ms / 1000.0)
        image = req.image.to_pil().convert("RGB")
        mask = None
        if req.mask is not None and self.plan.adapter.takes_mask:
            mask = req.mask.to_pil().convert("RGB").resize(image.size)
        job = Job(gen=gen, image=image, prompt=req.instruction, seed=req.seed, mask=mask)
        return await self._service.submit(job)

    async def edit(self, req: EditRequest) -> EditResult:
        out = await self.generate(req)
        image = Image(out.pixels8)
        returned = image.size
        if self.options.resize_to_source and image.size != req.image.size:
            from PIL import Image as PILImage

            image = Image.from_pil(image.to_pil().resize(req.image.size, PILImage.LANCZOS))
        info: dict[str, Any] = {"pipeline": self.plan.adapter.class_name, "returned_size": list(returned),
                                "batch_size": out.batch_size, "batch_s": round(out.batch_s, 4),
                                "batch_share_s": round(out.batch_s / out.batch_size, 4), "device": out.device}
        if req.mask is not None and not self.plan.adapter.takes_mask:
            info["mask_ignored"] = True  # this pipeline edits the whole image
        return EditResult(image=image, info=info)
