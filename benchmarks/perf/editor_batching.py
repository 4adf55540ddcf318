"""Dynamic batching of the ``diffusers:PATH`` editor, against a plain diffusers loop, measured in one run.

    pip install 'refine-agent[local]'                                 # torch, diffusers, transformers
    python -m refine_agent.benchmarks.perf.editor_batching            # GPU: SD1.5-sized InstructPix2Pix, 512x512
    python -m refine_agent.benchmarks.perf.editor_batching --tiny     # CPU (the default without CUDA): tiny model
    python -m refine_agent.benchmarks.perf.editor_batching --batches 1 8 --edits 64 --json out.json

A StableDiffusionInstructPix2PixPipeline with random weights is built from the real SD1.5 / InstructPix2Pix
configs written below (UNet with 8 input channels, the SD1.5 VAE, a ViT-L/14 CLIP text encoder over a local
byte-level vocabulary, Euler ancestral); nothing is downloaded. For each batch size b, N edits arrive at once
as N ``refine()`` calls (round 0 only, a judge that does not judge) through the editor with
``max_batch_size=b``; the same pipeline folder, loaded a second time, runs N/b plain ``pipe(...)`` calls of b
prompts. Targets on a GPU: throughput at batch 8 >= 2x batch 1; our overhead vs the plain loop < 3%; with 2+
GPUs (``devices=[...]``, one replica each) >= 0.9x per added GPU. It also prints how far batched pixels are
from one-at-a-time pixels (float precision, not bit for bit).

On CPU it runs tiny configs (diffusers' test sizes) on small images: the figures there are about our own
overhead (asyncio, batching, image conversion), not about GPU throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import numpy as np

from refine_agent.budget import Budget
from refine_agent.images import Image
from refine_agent.loop import RefineResult, refine
from refine_agent.pool import model_pool
from refine_agent.registry import create_tool
from refine_agent.runtime import Runtime, RuntimeConfig
from refine_agent.types import EditRequest, JudgeRequest, Verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here is downloaded

# stable-diffusion-v1-5 / timbrooks/instruct-pix2pix component configs (InstructPix2Pix: 8 UNet input channels)
SD15_UNET: dict[str, Any] = {
    "sample_size": 64, "in_channels": 8, "out_channels": 4, "center_input_sample": False, "flip_sin_to_cos": True,
    "freq_shift": 0, "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2, "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu",
    "norm_num_groups": 32, "norm_eps": 1e-5, "cross_attention_dim": 768, "attention_head_dim": 8}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
    "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215}
VIT_L14_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 768}
SD15_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading"}
# diffusers' own InstructPix2Pix test sizes (one layer per block)
TINY_UNET: dict[str, Any] = {
    "sample_size": 32, "in_channels": 8, "out_channels": 4, "block_out_channels": (32, 64), "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"), "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 64), "layers_per_block": 1,
    "latent_channels": 4}
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 1000, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 5, "num_attention_heads": 4,
    "max_position_embeddings": 77, "layer_norm_eps": 1e-5, "projection_dim": 32}
PROMPTS = ("make the sky purple", "turn it into a watercolor painting", "add snow on the ground", "make it night")


def tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer over single bytes (GPT-2's printable stand-ins for the 256 bytes, alone and ending a word;
    no merges), written as vocab.json / merges.txt and read back."""
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    symbols = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77)


def build_pipeline(root: Path, tiny: bool) -> Path:
    """Save a random-weight InstructPix2Pix pipeline to ``root/pipeline`` (float32 when tiny, else float16)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = tokenizer(root / "vocab")
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|startoftext|>", "<|endoftext|>")}
    text = {**(TINY_TEXT if tiny else VIT_L14_TEXT), "bos_token_id": ids["<|startoftext|>"],
            "eos_token_id": ids["<|endoftext|>"], "pad_token_id": ids["<|endoftext|>"]}
    assert text["vocab_size"] >= len(tok), "the text encoder's vocabulary must cover the tokenizer's"
    torch.manual_seed(0)
    pipe: Any = diffusers.StableDiffusionInstructPix2PixPipeline(
        vae=diffusers.AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE)),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text)), tokenizer=tok,
        unet=diffusers.UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET)),
        scheduler=diffusers.EulerAncestralDiscreteScheduler(**SD15_SCHEDULER), safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    if not tiny:
        pipe.to(torch.float16)  # half the disk; the editor loads it in its own dtype
    pipe.save_pretrained(root / "pipeline")
    return root / "pipeline"


class NoJudge:
    """A judge that does not judge, so the timing is the editor's."""

    name = "none"

    async def judge(self, req: JudgeRequest) -> Verdict:
        return Verdict.failed("unsupported", "perf run: not judged", judge="none")


class Bench:
    """The images, prompts and seeds of one run, and the two ways to edit them."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder, self.steps, self.dtype = folder, args.steps, args.dtype
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(max(args.edits, 8))]
        self.images = [Image(a) for a in arrays]
        self.prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(arrays))]
        self._plain: Any = None
        self._warmed: set[int] = set()  # batch sizes the plain pipeline has run once

    def editor(self, batch: int, **options: Any) -> Any:
        opts = {"num_inference_steps": self.steps, "max_batch_size": batch, "dtype": self.dtype, **options}
        return create_tool("editor", f"diffusers:{self.folder}", opts)

    def request(self, i: int) -> EditRequest:
        k = i % len(self.images)
        return EditRequest(image=self.images[k], instruction=self.prompts[k], seed=1000 + i)

    async def ours(self, editor: Any, n: int) -> tuple[float, float, float]:
        """Edits per second of n concurrent round-0 ``refine()`` calls, the mean batch (edits / pipeline calls),
        and the share of the wall time the pipeline replicas were busy."""
        # A Runtime per editor: limiters are shared by model (limiter_key) and sized by the first caller.
        runtime, judge = Runtime(RuntimeConfig(cache=False)), NoJudge()

        def one(i: int) -> Awaitable[RefineResult]:
            k = i % len(self.images)
            return refine(self.images[k], self.prompts[k], editor=editor, judge=judge, budget=Budget(max_rounds=0),
                          critic=None,  # type: ignore[arg-type]  # none is needed with max_rounds=0
                          seed=i, sample_id=f"s{i}", runtime=runtime)

        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        seconds = time.perf_counter() - start
        rounds = [r.trajectory.rounds[0] for r in results]
        if failed := [r.error for r in rounds if r.error]:
            raise RuntimeError(f"{len(failed)} edit(s) failed: {failed[0]}")
        busy = sum(r.edit_info["batch_share_s"] for r in rounds) / seconds / len(editor.plan.devices)
        return n / seconds, n / sum(1.0 / r.edit_info["batch_size"] for r in rounds), busy

    async def warm(self, batch: int, **options: Any) -> Any:
        """An editor with ``max_batch_size=batch``, after one full batch per replica."""
        editor = self.editor(batch, **options)
        await asyncio.gather(*(editor.edit(self.request(i)) for i in range(editor.capacity)))
        return editor

    def plain(self, batch: int, n: int, device: str, dtype: str) -> float:
        """Edits per second of a plain diffusers loop: n / batch calls of ``batch`` prompts (warm-up: one call)."""
        import torch
        from diffusers import StableDiffusionInstructPix2PixPipeline

        if self._plain is None:  # loaded once, apart from the editor's
            pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(self.folder, dtype=getattr(torch, dtype))
            self._plain = pipe.to(device)
            self._plain.set_progress_bar_config(disable=True)
        pipe, pil = self._plain, [im.to_pil() for im in self.images]

        def call(first: int) -> None:
            idx = [(first + j) % len(pil) for j in range(batch)]
            gens = [torch.Generator("cpu").manual_seed(1000 + first + j) for j in range(batch)]
            pipe(prompt=[self.prompts[k] for k in idx], image=[pil[k] for k in idx], generator=gens,
                 num_inference_steps=self.steps, output_type="np")

        def sync() -> None:  # output_type="np" copies to the host anyway
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)

        with torch.inference_mode():
            if batch not in self._warmed:
                self._warmed.add(batch)
                call(0)
                sync()
            start = time.perf_counter()
            for first in range(0, n, batch):
                call(first)
            sync()
            return n / (time.perf_counter() - start)

    async def determinism(self) -> dict[str, Any]:
        """8 requests batched together vs one at a time: how far the float pixels and 8-bit values are."""
        batched_editor, single_editor = self.editor(8, batch_wait_ms=1000), self.editor(1)
        requests = [self.request(i) for i in range(8)]
        batched = await asyncio.gather(*(batched_editor.generate(r) for r in requests))
        single = [await single_editor.generate(r) for r in requests]
        worst = max(float(np.abs(b.pixels - s.pixels).max()) for b, s in zip(batched, single, strict=True))
        differ = sum(int((np.round(b.pixels * 255) != np.round(s.pixels * 255)).sum())
                     for b, s in zip(batched, single, strict=True))
        return {"batch_sizes": [g.batch_size for g in batched], "max_abs_diff": worst, "values_differ": differ,
                "values": sum(b.pixels.size for b in batched)}


async def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    probe = bench.editor(1)
    device, dtype = probe.plan.devices[0], probe.plan.dtype
    out: dict[str, Any] = {"device": device, "dtype": dtype, "tiny": args.tiny, "size": args.size,
                           "steps": args.steps, "edits": args.edits, "repeats": args.repeats, "rows": []}
    # Ours and plain alternate, plain first: on CPU, torch in a second thread (the editor's worker; the plain loop
    # runs in this one) slows every torch call in the process, so both are timed once both threads have run.
    # The best of the repeats counts: other load only slows.
    for b in args.batches:
        editor, ours, plain = await bench.warm(b), (0.0, 0.0, 0.0), 0.0
        for _ in range(args.repeats):
            plain = max(plain, bench.plain(b, args.edits, device, dtype))
            ours = max(ours, await bench.ours(editor, args.edits))
        out["rows"].append({"batch": b, "ours_per_s": ours[0], "plain_per_s": plain, "mean_batch": ours[1],
                            "busy_pct": ours[2] * 100, "overhead_pct": (plain - ours[0]) / plain * 100})
    rows = {r["batch"]: r for r in out["rows"]}
    lo, hi = min(rows), max(rows)
    out["scaling"] = {"from": lo, "to": hi, "ours": rows[hi]["ours_per_s"] / rows[lo]["ours_per_s"],
                      "plain": rows[hi]["plain_per_s"] / rows[lo]["plain_per_s"]}
    out["max_overhead_pct"] = max(r["overhead_pct"] for r in out["rows"])
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus >= 2:
        multi = []
        for k in range(1, gpus + 1):
            editor = await bench.warm(8, devices=[f"cuda:{i}" for i in range(k)])
            per_s = max([(await bench.ours(editor, args.edits * k))[0] for _ in range(args.repeats)])
            multi.append({"gpus": k, "ours_per_s": per_s})
            await model_pool().aclose()  # free the replicas before loading more
        for m in multi:
            m["speedup"] = m["ours_per_s"] / multi[0]["ours_per_s"]
            m["per_gpu"] = m["speedup"] / m["gpus"]
        out["multi_gpu"] = multi
    else:
        out["multi_gpu"] = f"skipped: torch sees {gpus} CUDA GPU(s), multi-GPU scaling needs 2 or more"
    out["determinism"] = await bench.determinism()
    await model_pool().aclose()
    return out


def report(out: dict[str, Any]) -> None:
    if out["tiny"]:
        print(f"NOTE: tiny random-weight model at {out['size']}x{out['size']} on {out['device']}: these figures are "
              "about our overhead only, not GPU throughput")
    print(f"InstructPix2Pix ({'tiny' if out['tiny'] else 'SD1.5-sized'}, random weights), {out['size']}x{out['size']}, "
          f"{out['steps']} steps, {out['edits']} concurrent edits, {out['device']} {out['dtype']}, best of "
          f"{out['repeats']} runs")
    print(f"  {'batch':>5}  {'ours edits/s':>12}  {'plain edits/s':>13}  {'overhead':>8}  {'mean batch':>10}  "
          f"{'pipeline busy':>13}")
    for r in out["rows"]:
        print(f"  {r['batch']:>5}  {r['ours_per_s']:>12.2f}  {r['plain_per_s']:>13.2f}  {r['overhead_pct']:>7.1f}%  "
              f"{r['mean_batch']:>10.2f}  {r['busy_pct']:>12.1f}%")
    s = out["scaling"]
    print(f"  throughput batch {s['to']} / batch {s['from']}: ours {s['ours']:.2f}x, plain {s['plain']:.2f}x   "
          "(target >= 2x on a GPU, batch 8 / batch 1)")
    print(f"  max overhead vs plain: {out['max_overhead_pct']:.1f}%   (target < 3%)")
    if isinstance(out["multi_gpu"], str):
        print(f"multi-GPU: {out['multi_gpu']}")
    else:
        print("multi-GPU (batch 8, edits scaled by GPUs):")
        for m in out["multi_gpu"]:
            print(f"  {m['gpus']} GPU(s): {m['ours_per_s']:.2f} edits/s = {m['speedup']:.2f}x one GPU, "
                  f"{m['per_gpu']:.2f}x per GPU   (target >= 0.9x per added GPU)")
    d = out["determinism"]
    print(f"determinism, 8 edits batched (batch sizes {sorted(set(d['batch_sizes']))}) vs one at a time: max |float "
          f"diff| {d['max_abs_diff']:.2e}; 8-bit values that differ: {d['values_differ']} of {d['values']}")


def main() -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # before diffusers is imported: no torchvision notes, no bars
    transformers.logging.disable_progress_bar()
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()

    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=not cuda,
                    help="tiny configs (default without a CUDA GPU)")
    ap.add_argument("--size", type=int, default=None, help="image side (512; 64 with --tiny)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8], help="max_batch_size values")
    ap.add_argument("--edits", type=int, default=32 if cuda else 16, help="concurrent edits, a multiple of 8")
    ap.add_argument("--steps", type=int, default=20 if cuda else 4, help="num_inference_steps")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best counts")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    args.size = args.size or (64 if args.tiny else 512)
    if args.edits % 8 or any(args.edits % b for b in args.batches):
        ap.error("--edits must be a multiple of 8 and of every batch size")
    with tempfile.TemporaryDirectory(prefix="editor-batching-") as tmp:
        start = time.perf_counter()
        folder = build_pipeline(Path(tmp), args.tiny)
        print(f"built the random-weight pipeline in {time.perf_counter() - start:.1f} s")
        out = asyncio.run(run(Bench(folder, args), args))
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
