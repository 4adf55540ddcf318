"""Options of the local backends (light: pydantic only), and the transport mixin that nests them in a tool's
options the way ``WithAPITransport`` nests the HTTP ones."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from refine_agent.tools.api.options import nest_transport

from .vllm_server import VLLMServerOptions


class TransformersOptions(BaseModel):
    """Where and how an in-process model runs (the backend's options; ``-J dtype=bfloat16`` and so on)."""

    model_config = ConfigDict(extra="forbid")

    revision: str | None = Field(default=None, description="revision of a Hugging Face cache repo")
    allow_download: bool = Field(default=False, description="let a repo id be downloaded when it is not in your "
                                 "Hugging Face cache (off: only local files are read)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto", description="auto: bfloat16 on a GPU that has it, else float16 on GPU, float32 on CPU")
    device: str | None = Field(default=None, description="e.g. cuda:0 (default: cuda if there is one, else cpu)")
    device_map: str | None = Field(default=None, description="shard one model over GPUs, e.g. auto (instead of "
                                   "device)")
    attn_implementation: str | None = Field(default=None, description="sdpa, flash_attention_2, eager, ...")
    min_pixels: int | None = Field(default=None, ge=28 * 28, description="smallest image area the processor "
                                   "resizes to (IE-Critic-R1 evaluates at 262144)")
    max_pixels: int | None = Field(default=None, ge=28 * 28, description="largest image area (IE-Critic-R1: "
                                   "1048576)")
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus sampling (with temperature > 0)")
    max_batch_size: int = Field(default=8, ge=1, le=256, description="most requests in one generate")
    batch_wait_ms: float = Field(default=10.0, ge=0, le=10_000, description="how long a partial batch waits")
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (default: free)")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens (default: free)")

    def semantic(self) -> dict[str, Any]:
        """What changes replies (for cache keys): weights' revision and dtype, image sizes, sampling."""
        return self.model_dump(mode="json", include={"revision", "dtype", "min_pixels", "max_pixels", "top_p"})


class WithTransformersTransport(BaseModel):
    """Options of a tool on the in-process backend: where and how the model runs, nested under ``transport``
    (given flat on the command line: ``-J dtype=bfloat16 -J max_pixels=1048576``)."""

    model_config = ConfigDict(extra="forbid")

    transport: TransformersOptions = Field(default_factory=TransformersOptions, description=(
        "where and how the model runs, given flat (-J dtype=bfloat16): revision, allow_download, dtype, device, "
        "device_map, attn_implementation, min_pixels, max_pixels, top_p, max_batch_size (8), batch_wait_ms (10), "
        "price_in, price_out"))

    @model_validator(mode="before")
    @classmethod
    def _nest_transport(cls, data: Any) -> Any:
        return nest_transport(data, TransformersOptions)


class VLLMOptions(VLLMServerOptions):
    """The servers' settings, and how the adapter talks to them."""

    max_concurrency: int = Field(default=64, ge=1, description="requests in flight at once (vLLM batches them)")
    timeout_s: float = Field(default=600.0, gt=0, description="one request's HTTP timeout")
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (default: free)")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens (default: free)")

    def semantic(self) -> dict[str, Any]:
        """What changes replies: the context length and the server's own arguments."""
        return self.model_dump(mode="json", include={"max_model_len", "extra_args", "served_model_name"})


class WithVLLMTransport(BaseModel):
    """Options of a tool on managed vLLM servers: the servers' settings, nested under ``transport`` (given
    flat: ``-J tensor_parallel_size=2 -J replicas=2``)."""

    model_config = ConfigDict(extra="forbid")

    transport: VLLMOptions = Field(default_factory=VLLMOptions, description=(
        "the servers, given flat (-J tensor_parallel_size=2): tensor_parallel_size, replicas, gpus, max_model_len, "
        "gpu_memory_utilization, limit_mm_per_prompt (2), port, extra_args, startup_timeout_s, served_model_name, "
        "max_concurrency (64), timeout_s (600), price_in, price_out"))

    @model_validator(mode="before")
    @classmethod
    def _nest_transport(cls, data: Any) -> Any:
        return nest_transport(data, VLLMOptions)
