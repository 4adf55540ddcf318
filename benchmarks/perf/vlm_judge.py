"""Judgments per second through the ``transformers:PATH`` judge at batch 1 and 8, against a plain generate loop.

    pip install 'refine-agent[local]'                              # torch, transformers, xgrammar
    python -m refine_agent.benchmarks.perf.vlm_judge               # GPU: Qwen2.5-VL-7B-shaped, bf16, 512x512
    python -m refine_agent.benchmarks.perf.vlm_judge --tiny        # CPU (the default without CUDA): tiny model
    python -m refine_agent.benchmarks.perf.vlm_judge --model-dir /data/qwen25vl7b-random --json out.json

A Qwen2.5-VL with random weights is built from the real Qwen2.5-VL-7B-Instruct config below (initialised on
the GPU; ``--model-dir`` keeps it); nothing is downloaded. Its tokenizer is byte-level (a token per character
of prompt text, a small vocabulary for the grammar mask; ``--tokenizer DIR`` takes a real Qwen one). For each
batch size b, N ``judge()`` calls in mode ``viescore_single`` (one constrained greedy call, two images) arrive
at once at a judge with ``max_batch_size=b``; then the same model object runs the prompts the judge sent (text,
images, xgrammar constraint) in a plain ``model.generate`` loop, b at a time, in the same worker thread: both
should give the same tokens, and the script counts how many did. Targets on a GPU: batch 8 >= 4x batch 1,
overhead vs plain < 5%. Random weights under a grammar write long replies: the mean output tokens are printed
so runs compare. Where vLLM is installed, ``vllm serve --load-format dummy`` of the folder is timed too.

On CPU it runs a tiny config on 64x64 images, one torch thread: the figures there are about our own overhead
(asyncio, batching, chat template, image conversion), not about GPU throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from refine_agent.images import Image
from refine_agent.pool import model_pool
from refine_agent.registry import create_tool
from refine_agent.types import JudgeRequest, Verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here is downloaded

# Qwen/Qwen2.5-VL-7B-Instruct's config.json (text and vision towers)
QWEN25_VL_7B_TEXT: dict[str, Any] = {
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu", "max_position_embeddings": 128000,
    "max_window_layers": 28, "rms_norm_eps": 1e-6, "use_sliding_window": False, "sliding_window": 32768,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}}
QWEN25_VL_7B_VISION: dict[str, Any] = {
    "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "hidden_act": "silu",
    "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2}
# tests' sizes: hidden 32, two layers, two vision blocks (one windowed); std 0.5 so greedy replies vary
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 512, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 4096, "max_window_layers": 2, "initializer_range": 0.5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]}}
TINY_VISION: dict[str, Any] = {
    "depth": 2, "hidden_size": 32, "intermediate_size": 32, "num_heads": 4, "hidden_act": "silu", "patch_size": 14,
    "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
    "out_hidden_size": 32, "initializer_range": 0.5}
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>")
CHAT_TEMPLATE = (  # Qwen2.5-VL-Instruct's, images and text parts only
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
INSTRUCTIONS = ("make the sky purple", "turn it into a watercolor painting", "add snow on the ground", "make it night")


def tokenizer(real: Path | None) -> Any:
    """A byte-level Qwen2 tokenizer (GPT-2's stand-ins for the 256 bytes, no merges), the Qwen special tokens and
    chat template; or a real Qwen tokenizer folder."""
    from transformers import AutoTokenizer, Qwen2Tokenizer

    if real is not None:
        tok = AutoTokenizer.from_pretrained(real, local_files_only=True, padding_side="left")
        tok.chat_template = tok.chat_template or CHAT_TEMPLATE
        return tok
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    vocab = {(chr(b) if b in printable else chr(next(extra))): b for b in range(256)}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>", padding_side="left")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL)})
    tok.eos_token, tok.chat_template = "<|im_end|>", CHAT_TEMPLATE
    return tok


def build_model(folder: Path, tiny: bool, real_tokenizer: Path | None) -> tuple[float, float]:
    """Save a random-weight Qwen2_5_VLForConditionalGeneration and its processor files in ``folder``: float32
    on the CPU when tiny, else bfloat16 initialised on the GPU. Seconds to initialise it and to save it."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = tokenizer(real_tokenizer)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    text = {**(TINY_TEXT if tiny else QWEN25_VL_7B_TEXT), "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
    text["vocab_size"] = max(text["vocab_size"], len(tok))
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=TINY_VISION if tiny else QWEN25_VL_7B_VISION, tie_word_embeddings=tiny,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device("cpu" if tiny else "cuda"):  # no slow CPU initialisation of 8B parameters
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=torch.float32 if tiny else torch.bfloat16).eval()
    model.generation_config = GenerationConfig(bos_token_id=ids["<|endoftext|>"], pad_token_id=tok.pad_token_id,
                                               eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]])
    if not tiny:
        torch.cuda.synchronize()  # the initialisation kernels have run
    init_s, start = time.perf_counter() - start, time.perf_counter()
    model.save_pretrained(folder)
    save_s = time.perf_counter() - start
    tok.save_pretrained(folder)
    vision = {"min_pixels": 56 * 56, "max_pixels": 112 * 112 if tiny else 12845056, "patch_size": 14,
              "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
              "image_std": [0.26862954, 0.26130258, 0.27577711], "processor_class": "Qwen2_5_VLProcessor"}
    for name, kind in (("preprocessor_config.json", {"image_processor_type": "Qwen2VLImageProcessor"}),
                       ("video_preprocessor_config.json", {"video_processor_type": "Qwen2VLVideoProcessor"})):
        (folder / name).write_text(json.dumps({**vision, **kind}, indent=2) + "\n", encoding="utf-8")
    config_file = folder / "tokenizer_config.json"
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    config_file.write_text(json.dumps({**saved, "processor_class": "Qwen2_5_VLProcessor"}, indent=2), "utf-8")
    return init_s, save_s


class Bench:
    """The judgments of one run (image pairs, instructions) and the two ways to run them."""

    def __init__(self, folder: Path, args: argparse.Namespace) -> None:
        self.folder, self.args = folder, args
        rng = np.random.default_rng(0)
        pairs = [[Image(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)) for _ in range(2)]
                 for _ in range(args.judgments)]
        self.requests = [JudgeRequest(source=s, edited=e, instruction=INSTRUCTIONS[i % len(INSTRUCTIONS)], seed=i)
                         for i, (s, e) in enumerate(pairs)]
        self._vlm: Any = None
        self.seen: list[tuple[Any, Any]] = []

    def judge(self, spec: str, **options: Any) -> Any:
        return create_tool("judge", spec, {"mode": "viescore_single", "max_tokens": self.args.max_tokens, **options})

    async def ours(self, judge: Any, n: int | None = None) -> tuple[float, list[Verdict]]:
        """Judgments per second of N (or the first n) concurrent ``judge()`` calls, and the verdicts."""
        start = time.perf_counter()
        verdicts = await asyncio.gather(*(judge.judge(r) for r in self.requests[:n]))
        return len(verdicts) / (time.perf_counter() - start), list(verdicts)

    async def model(self, judge: Any) -> Any:
        """The judge's loaded model, its batches recorded in ``seen``: (Prompt, Generated) of each request."""
        vlm = await judge.chat.load()
        if vlm is not self._vlm:
            self._vlm, run_batch = vlm, vlm.batcher.run_batch

            async def recording(prompts: list[Any]) -> Any:
                results = await run_batch(prompts)
                self.seen.extend(zip(prompts, results, strict=True))
                return results

            vlm.batcher.run_batch = recording
        return vlm

    @staticmethod
    def plain(vlm: Any, prompts: list[Any], batch: int, max_tokens: int) -> tuple[float, list[tuple[str, int]]]:
        """Judgments per second of a plain ``model.generate`` loop, and each reply's text and tokens (with stop)."""
        import torch

        model, proc = vlm.model, vlm.processor
        tok = proc.tokenizer
        stops = set(model.generation_config.eos_token_id) | {tok.eos_token_id}
        rows: list[list[int]] = []
        start = time.perf_counter()
        with torch.inference_mode():
            for k in range(0, len(prompts), batch):
                chunk = prompts[k:k + batch]
                inputs = proc(text=[p.text for p in chunk], images=[p.images for p in chunk], padding=True,
                              return_tensors="pt").to(model.device)
                grammar = vlm.grammars.processor([p.constraint for p in chunk])
                out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, logits_processor=[grammar],
                                     pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
                rows += out[:, inputs["input_ids"].shape[1]:].tolist()
        seconds = time.perf_counter() - start  # .tolist() waited for the GPU
        replies = []
        for row in rows:
            end = next((j for j, t in enumerate(row) if t in stops), None)
            replies.append((tok.decode(row[:end], skip_special_tokens=True), len(row) if end is None else end + 1))
        return len(prompts) / seconds, replies


def _tokens(verdicts: list[Verdict]) -> float:
    return sum(v.usage.output_tokens for v in verdicts) / len(verdicts)


async def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"tiny": args.tiny, "size": args.size, "judgments": args.judgments,
                           "max_tokens": args.max_tokens, "repeats": args.repeats, "rows": []}
    loop = asyncio.get_running_loop()
    for b in args.batches:
        judge = bench.judge(f"transformers:{bench.folder}", max_batch_size=b, batch_wait_ms=args.wait_ms)
        start = time.perf_counter()
        vlm = await bench.model(judge)
        out.setdefault("load_s", time.perf_counter() - start)
        out.update(device=vlm.device, dtype=vlm.dtype)
        bench.seen = []
        await bench.ours(judge, b)  # warm-up: one batch each way
        await loop.run_in_executor(vlm.thread, Bench.plain, vlm, [p for p, _ in bench.seen], b, args.max_tokens)
        # Each repeat: ours, then plain on the prompts ours just sent, in the model's worker thread as ours runs.
        ours, plain, sizes = 0.0, 0.0, len(vlm.batcher.batch_sizes)
        for _ in range(args.repeats):
            bench.seen = []
            per_s, verdicts = await bench.ours(judge)
            ours, prompts, ours_out = max(ours, per_s), [p for p, _ in bench.seen], [g for _, g in bench.seen]
            per_s, plain_out = await loop.run_in_executor(vlm.thread, Bench.plain, vlm, prompts, b, args.max_tokens)
            plain = max(plain, per_s)
        formed = vlm.batcher.batch_sizes[sizes:]
        out["rows"].append({
            "batch": b, "ours_per_s": ours, "plain_per_s": plain, "overhead_pct": (plain - ours) / plain * 100,
            "mean_batch": sum(formed) / len(formed), "ours_tokens": _tokens(verdicts),
            "plain_tokens": sum(n for _, n in plain_out) / len(plain_out),
            "identical": sum((g.text, g.output_tokens) == p for g, p in zip(ours_out, plain_out, strict=True)),
            "input_tokens": sum(v.usage.input_tokens for v in verdicts) / len(verdicts),
            "statuses": dict(Counter(v.status for v in verdicts))})
    rows = {r["batch"]: r for r in out["rows"]}
    lo, hi = min(rows), max(rows)
    out["scaling"] = {"from": lo, "to": hi, "ours": rows[hi]["ours_per_s"] / rows[lo]["ours_per_s"],
                      "plain": rows[hi]["plain_per_s"] / rows[lo]["plain_per_s"]}
    out["max_overhead_pct"] = max(r["overhead_pct"] for r in out["rows"])
    del judge, vlm
    bench._vlm = None
    await model_pool().aclose()
    gc.collect()  # nothing holds the model now: its GPU memory goes back before vLLM starts
    out["vllm"] = await vllm(bench, args, rows[hi])
    return out


async def vllm(bench: Bench, args: argparse.Namespace, row: dict[str, Any]) -> dict[str, Any] | str:
    """The same judgments through a managed ``vllm serve`` (dummy weights) at the largest batch's concurrency."""
    import torch

    if args.tiny or not torch.cuda.is_available():
        return "skipped: vLLM needs a CUDA GPU and the full-size model (this run is tiny, on CPU)"
    for package in ("vllm", "openai"):
        if importlib.util.find_spec(package) is None or (package == "vllm" and not shutil.which("vllm")):
            return f"skipped: {package} is not installed (pip install {package})"
    from refine_agent.tools.local.vllm_server import ServerGroup, VLLMServerOptions

    torch.cuda.empty_cache()
    name, b = "qwen25-vl-random", row["batch"]
    opts = VLLMServerOptions(served_model_name=name, max_model_len=16384, gpu_memory_utilization=0.85,
                             extra_args=["--load-format", "dummy", "--seed", "0"])
    start = time.perf_counter()
    try:
        async with ServerGroup(str(bench.folder), opts) as group:
            started = time.perf_counter() - start
            judge = bench.judge(f"openai:{name}", base_url=group.urls, max_concurrency=b, timeout_s=600)
            await bench.ours(judge)  # warm-up
            best, verdicts = max([await bench.ours(judge) for _ in range(args.repeats)], key=lambda r: r[0])
    except Exception as exc:  # noqa: BLE001 (any failure is reported, the transformers figures stand)
        return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return {"concurrency": b, "start_s": started, "per_s": best, "tokens": _tokens(verdicts),
            "vs_transformers": best / row["ours_per_s"], "tokens_per_s": best * _tokens(verdicts),
            "transformers_tokens_per_s": row["ours_per_s"] * row["ours_tokens"],
            "statuses": dict(Counter(v.status for v in verdicts))}


def report(out: dict[str, Any]) -> None:
    if out["tiny"]:
        print(f"NOTE: tiny random-weight model at {out['size']}x{out['size']} on {out['device']}: these figures are "
              "about our overhead only, not GPU throughput")
    print(f"Qwen2.5-VL ({'tiny' if out['tiny'] else '7B-shaped'}, random weights), 2 images of {out['size']}x"
          f"{out['size']}, viescore_single, {out['judgments']} concurrent judgments, max_tokens {out['max_tokens']}, "
          f"{out['device']} {out['dtype']}, best of {out['repeats']} runs; model loaded in {out['load_s']:.1f} s")
    print(f"  {'batch':>5}  {'ours judg/s':>11}  {'plain judg/s':>12}  {'overhead':>8}  {'mean batch':>10}  "
          f"{'in tok':>6}  {'out tok':>7}  {'same as plain':>13}  verdicts")
    for r in out["rows"]:
        print(f"  {r['batch']:>5}  {r['ours_per_s']:>11.2f}  {r['plain_per_s']:>12.2f}  {r['overhead_pct']:>7.1f}%  "
              f"{r['mean_batch']:>10.2f}  {r['input_tokens']:>6.0f}  {r['ours_tokens']:>7.1f}  "
              f"{r['identical']:>6}/{out['judgments']:<6}  {r['statuses']}")
    s = out["scaling"]
    print(f"  throughput batch {s['to']} / batch {s['from']}: ours {s['ours']:.2f}x, plain {s['plain']:.2f}x   "
          "(target >= 4x on a GPU, batch 8 / batch 1)")
    print(f"  max overhead vs plain: {out['max_overhead_pct']:.1f}%   (target < 5%)")
    v = out["vllm"]
    if isinstance(v, str):
        print(f"vLLM: {v}")
    else:
        print(f"vLLM (dummy weights, {v['concurrency']} in flight, started in {v['start_s']:.0f} s): {v['per_s']:.2f} "
              f"judgments/s = {v['vs_transformers']:.2f}x transformers at batch {v['concurrency']}; "
              f"{v['tokens']:.1f} output tokens per judgment, {v['tokens_per_s']:.0f} tokens/s vs "
              f"{v['transformers_tokens_per_s']:.0f} (other weights, other replies: compare tokens/s) {v['statuses']}")


def main() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import torch

    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action=argparse.BooleanOptionalAction, default=not cuda, help="default without CUDA")
    ap.add_argument("--size", type=int, default=None, help="image side (512; 64 with --tiny)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="max_batch_size values")
    ap.add_argument("--judgments", type=int, default=None, help="concurrent judgments (32; 16 with --tiny)")
    ap.add_argument("--max-tokens", type=int, default=None, help="longest reply (256; 200 with --tiny)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per measurement; the best counts")
    ap.add_argument("--wait-ms", type=float, default=10.0, help="the judge's batch_wait_ms")
    ap.add_argument("--model-dir", type=Path, default=None, help="build the model here once and reuse it")
    ap.add_argument("--tokenizer", type=Path, default=None, help="a real Qwen tokenizer folder (local files)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    args.size, args.judgments, args.max_tokens = (args.size or (64 if args.tiny else 512),
                                                  args.judgments or (16 if args.tiny else 32),
                                                  args.max_tokens or (200 if args.tiny else 256))
    if args.tiny:  # the tiny model gains nothing from more threads, and they make CPU timings noisy
        torch.set_num_threads(1)
    elif not cuda:
        ap.error("the 7B-shaped model needs a CUDA GPU; use --tiny")
    if any(args.judgments % b for b in args.batches):
        ap.error("--judgments must be a multiple of every batch size")
    with tempfile.TemporaryDirectory(prefix="vlm-judge-") as tmp:
        folder = args.model_dir or Path(tmp) / "model"
        if not (folder / "config.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            init_s, save_s = build_model(folder, args.tiny, args.tokenizer)
            size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e9
            print(f"random-weight model initialised in {init_s:.1f} s, saved ({size:.2f} GB) in {save_s:.1f} s")
        out = asyncio.run(run(Bench(folder, args), args))
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
