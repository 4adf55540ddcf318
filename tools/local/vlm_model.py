"""One in-process vision-language model: loaded once per process (the model pool), fed by the core batcher.

Concurrent requests (samples, repeats, viescore's SC and PQ calls, a judge's and a critic's) with the same
decoding settings are gathered into one left-padded ``generate`` in the model's own worker thread. Each row
carries its own constraint (a JSON schema or a regex), so calls with different output contracts still share
a batch. Greedy decoding is deterministic and batch-invariant up to float precision; a sampled request runs
alone, seeded with its own seed.
"""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_agent.batching import Batcher
from refine_agent.errors import ConfigError, PermanentToolError, ToolError, describe

from .grammar import Constraint, Grammars
from .options import TransformersOptions
from .weights import LOADING, load_failure, resolve_dtype


@dataclass(frozen=True)
class Decoding:
    """The per-call settings that decide which requests may share a ``generate``."""

    max_new_tokens: int
    temperature: float  # 0: greedy
    top_p: float | None
    seed: int | None  # only when sampling: a sampled request runs alone, seeded
    max_batch: int  # the asking backend's batching settings: tools sharing one model may differ
    wait_s: float


@dataclass
class Prompt:
    """One request, ready for the processor: chat-template text, its images, and its output constraint."""

    text: str
    images: list[Any]
    constraint: Constraint | None
    decoding: Decoding


@dataclass
class Generated:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" or "length"
    batch_size: int = 1
    constrained: bool = False
    broke_constraint: bool = False


@dataclass
class LoadedVLM:
    """The model, its processor and the machinery around them."""

    path: Path
    model: Any
    processor: Any
    device: str
    dtype: str
    config_hash: str
    grammars: Grammars | None
    stop_ids: frozenset[int]  # the tokens that end a reply (the model's eos ids and the tokenizer's)
    thread: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="vlm"))
    batcher: Batcher[Prompt, Generated] | None = None

    def __post_init__(self) -> None:
        # On a GPU, two batches at once: the next one is preprocessed (images resized and patched, on the CPU)
        # while the current one generates; generation itself stays in the model's one worker thread. On a
        # CPU both would compete for the same cores, so one batch at a time lets the next fill up meanwhile.
        self.batcher = Batcher(self._run, max_size=256, key=lambda p: p.decoding, limit=_limit,
                               wait=lambda d: d.wait_s, max_batches=1 if self.device == "cpu" else 2)

    async def submit(self, prompt: Prompt) -> Generated:
        assert self.batcher is not None
        return await self.batcher.submit(prompt)

    async def _run(self, prompts: list[Prompt]) -> list[Generated]:
        try:
            loop = asyncio.get_running_loop()
            # On a GPU the next batch is preprocessed in a helper thread while this one generates; on a CPU
            # the cores are busy generating, and torch in a second thread slows every torch call.
            prep = loop.run_in_executor(self.thread if self.device == "cpu" else None, self._preprocess, prompts)
            return await loop.run_in_executor(self.thread, self._generate, prompts, await prep)
        except ToolError:
            raise
        except Exception as exc:
            if len(prompts) > 1:
                raise  # the batcher splits the batch to find the request that fails
            raise PermanentToolError(f"{self.path.name} failed on this request: {describe(exc)}") from None

    def _preprocess(self, prompts: list[Prompt]) -> Any:
        """The batch's token ids and pixel values, left-padded (in a helper thread)."""
        images = [p.images for p in prompts]
        return self.processor(text=[p.text for p in prompts], images=images if any(images) else None,
                              padding=True, return_tensors="pt")

    def _generate(self, prompts: list[Prompt], inputs: Any) -> list[Generated]:
        """One left-padded ``generate`` (in the model's worker thread)."""
        import torch

        decoding = prompts[0].decoding
        inputs = inputs.to(self.model.device)
        kwargs: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "do_sample": decoding.temperature > 0}
        if decoding.temperature > 0:
            kwargs["temperature"] = decoding.temperature
            if decoding.top_p is not None:
                kwargs["top_p"] = decoding.top_p
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
        else:  # greedy: say so, whatever the model's generation_config suggests
            kwargs.update(temperature=None, top_p=None, top_k=None)
        constraints = [p.constraint for p in prompts]
        processor = None
        if self.grammars is not None and any(c is not None for c in constraints):
            processor = self.grammars.processor(constraints)
            kwargs["logits_processor"] = [processor]
        tokenizer = self.processor.tokenizer
        with torch.inference_mode():
            out = self.model.generate(**inputs, pad_token_id=tokenizer.pad_token_id, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        results = []
        for i, row in enumerate(new.tolist()):
            end = next((j for j, t in enumerate(row) if t in self.stop_ids), None)
            tokens = row if end is None else row[:end]
            results.append(Generated(
                text=tokenizer.decode(tokens, skip_special_tokens=True),
                input_tokens=int(inputs["attention_mask"][i].sum()),
                output_tokens=len(tokens) + (end is not None),
                finish_reason="stop" if end is not None else "length", batch_size=len(prompts),
                constrained=constraints[i] is not None and processor is not None,
                broke_constraint=processor is not None and i in processor.broken))
        return results

    async def aclose(self) -> None:
        """Fail what still waits for a batch, let the running one finish, then stop the worker thread."""
        assert self.batcher is not None
        await self.batcher.aclose()
        self.close()

    def close(self) -> None:
        self.thread.shutdown(wait=True)


def _limit(decoding: Any) -> int:
    return 1 if decoding.seed is not None else int(decoding.max_batch)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]


def load_vlm(path: Path, options: TransformersOptions) -> LoadedVLM:
    """Load the model and processor (blocking; one load at a time in a process). One line on failure."""
    import torch

    from .vlm_processor import load_processor

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(options.dtype, (device,))
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "local_files_only": not options.allow_download}
    if options.revision:
        kwargs["revision"] = options.revision
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    # straight onto the device (a 16 GB model should not pass through CPU memory), or sharded over GPUs
    kwargs["device_map"] = options.device_map or {"": device}
    try:
        with LOADING:  # one load at a time in a process (see weights.LOADING)
            from transformers import AutoModelForImageTextToText

            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
            model.eval()
            processor = load_processor(path, min_pixels=options.min_pixels, max_pixels=options.max_pixels)
    except (ConfigError, ToolError):
        raise
    except Exception as exc:  # noqa: BLE001 (transformers raises many types for a bad folder; each is one line)
        raise ConfigError(f"cannot load the model at {path}: {load_failure(exc)}") from None
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation continues each row from its last real token
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    stops = frozenset(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}
    grammars = None
    try:
        import xgrammar  # noqa: F401

        width = model.get_output_embeddings().weight.shape[0]  # the logits' width, often > len(tokenizer)
        grammars = Grammars(tokenizer, width, stop_token_ids=sorted(stops))
    except ImportError:
        pass
    config_file = path / "config.json"
    config_hash = hashlib.sha256(config_file.read_bytes()).hexdigest()[:16] if config_file.is_file() else ""
    return LoadedVLM(path=path, model=model, processor=processor, device=device if not options.device_map else
                     f"device_map={options.device_map}", dtype=dtype, config_hash=config_hash, grammars=grammars,
                     stop_ids=stops)
