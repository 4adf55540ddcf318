"""The diffusers editor on tiny saved pipelines of every supported class: sizes, seeds, batching, errors."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from refine_agent.errors import ConfigError, PermanentToolError
from refine_agent.images import Image
from refine_agent.pool import model_pool
from refine_agent.registry import create_tool
from refine_agent.types import EditRequest

Pipelines = Callable[[str], Path]

# Options that make each tiny pipeline fast on one CPU thread (and the Qwen conditioning small).
FAST: dict[str, dict[str, Any]] = {
    "ip2p": {},
    "sdxl_ip2p": {},
    "qwen_edit": {"condition_area": 64 * 64},
    "qwen_edit_plus": {"condition_area": 64 * 64},
    "flux_kontext": {},
    "flux2_klein": {},
    "custom": {"pipeline": "tests.custom_pipelines:TinyRenamedInstructPipeline",
               "arguments": {"prompt": "text", "image": "input_image", "num_inference_steps": "steps",
                             "guidance_scale": "cfg", "image_guidance_scale": "image_cfg"},
               "max_batch_size": 4},
}
EVERY_CLASS = list(FAST)


def editor(pipelines: Pipelines, name: str, **options: Any) -> Any:
    return create_tool("editor", f"diffusers:{pipelines(name)}", {"num_inference_steps": 2, **FAST[name], **options})


MIN_SIDE = {"flux2_klein": 64}  # its smallest image side; the others take 32


def picture(width: int = 32, height: int = 48, seed: int = 0) -> Image:
    return Image(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def request(seed: int = 1, image: Image | None = None, text: str = "make it red") -> EditRequest:
    return EditRequest(image=image or picture(), instruction=text, seed=seed)


@pytest.mark.parametrize("name", EVERY_CLASS)
async def test_every_class_edits_at_the_source_size_and_reports_its_batch(pipelines: Pipelines, name: str) -> None:
    tool = editor(pipelines, name)
    side = MIN_SIDE.get(name, 32)
    source = picture(side + 8, side + 24)  # not a multiple of 16: generated at a rounded size, resized back
    out = await tool.edit(request(image=source))
    assert out.image.size == source.size
    assert out.info["batch_size"] == 1 and out.info["batch_share_s"] > 0 and out.info["device"] == "cpu"
    assert tool.identity()["params"]["pipeline_class"] == tool.plan.adapter.class_name


@pytest.mark.parametrize("name", EVERY_CLASS)
async def test_the_same_seed_gives_the_same_image_and_another_seed_another(pipelines: Pipelines, name: str) -> None:
    tool = editor(pipelines, name, max_batch_size=1)
    side = MIN_SIDE.get(name, 32)
    image = picture(side, side + 16)
    a, b, c = [await tool.edit(request(seed=s, image=image)) for s in (7, 7, 8)]
    assert a.image == b.image
    assert a.image != c.image


async def test_concurrent_edits_share_a_batch_and_match_single_edits(pipelines: Pipelines) -> None:
    tool = editor(pipelines, "ip2p", max_batch_size=4, batch_wait_ms=200)
    requests = [request(seed=s, text=f"make it red {s}") for s in range(4)]
    batched = await asyncio.gather(*(tool.generate(r) for r in requests))
    assert [g.batch_size for g in batched] == [4, 4, 4, 4]
    single = [await tool.generate(r) for r in requests]
    assert all(g.batch_size == 1 for g in single)
    worst = max(float(np.abs(b.pixels - s.pixels).max()) for b, s in zip(batched, single, strict=True))
    assert worst < 1e-5, worst  # float precision, not bit for bit
    differ = sum(int((np.round(b.pixels * 255) != np.round(s.pixels * 255)).sum())
                 for b, s in zip(batched, single, strict=True))
    total = sum(b.pixels.size for b in batched)
    print(f"batched vs single: max |diff| {worst:.2e}; {differ} of {total} 8-bit values differ")


async def test_each_replica_takes_the_next_batch_and_gives_the_same_pixels(pipelines: Pipelines) -> None:
    # two CPU "devices": two replicas, each with its own worker thread, as two GPUs would be
    tool = editor(pipelines, "ip2p", devices=["cpu:0", "cpu:1"], max_batch_size=2)
    assert tool.capacity == 8  # a batch for each replica, and as many again queued
    same = request(seed=5)
    results = await asyncio.gather(*(tool.generate(same) for _ in range(6)))
    assert {g.device for g in results} == {"cpu:0", "cpu:1"} and all(g.batch_size == 2 for g in results)
    assert max(float(np.abs(g.pixels - results[0].pixels).max()) for g in results) < 1e-5


async def test_batch_size_one_reruns_are_bit_exact(pipelines: Pipelines) -> None:
    tool = editor(pipelines, "ip2p", max_batch_size=1)
    first = await asyncio.gather(*(tool.generate(request(seed=s)) for s in range(3)))
    again = await asyncio.gather(*(tool.generate(request(seed=s)) for s in range(3)))
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(first, again, strict=True))


async def test_other_sizes_or_steps_never_share_a_batch(pipelines: Pipelines) -> None:
    two = editor(pipelines, "ip2p", max_batch_size=8, batch_wait_ms=200)
    three = editor(pipelines, "ip2p", max_batch_size=8, batch_wait_ms=200, num_inference_steps=3)
    assert two.limiter_key() == three.limiter_key()  # one loaded pipeline, one limiter
    calls = [two.generate(request(seed=1)), two.generate(request(seed=2)),
             two.generate(request(seed=3, image=picture(48, 32))), three.generate(request(seed=4))]
    sizes = [g.batch_size for g in await asyncio.gather(*calls)]
    assert sizes == [2, 2, 1, 1]


async def test_a_cancelled_edit_is_dropped_before_its_batch(pipelines: Pipelines) -> None:
    tool = editor(pipelines, "ip2p", max_batch_size=8, batch_wait_ms=300)
    await tool.load()
    keep = [asyncio.ensure_future(tool.generate(request(seed=s))) for s in (1, 2)]
    gone = asyncio.ensure_future(tool.generate(request(seed=3)))
    await asyncio.sleep(0.05)
    gone.cancel()
    assert [g.batch_size for g in await asyncio.gather(*keep)] == [2, 2]


async def test_running_out_of_memory_retries_smaller_batches_then_fails_clearly(pipelines: Pipelines) -> None:
    tool = editor(pipelines, "custom", pipeline="tests.custom_pipelines:OutOfMemoryAbove2", max_batch_size=4,
                  batch_wait_ms=200)
    results = await asyncio.gather(*(tool.edit(request(seed=s)) for s in range(4)))
    assert [r.info["batch_size"] for r in results] == [2, 2, 2, 2]
    big = editor(pipelines, "custom", pipeline="tests.custom_pipelines:OutOfMemoryAbove2", max_batch_size=1)
    with pytest.raises(PermanentToolError, match="ran out of memory .* one 96x96 edit; try offload=model"):
        await big.edit(request(image=picture(96, 96)))


async def test_a_custom_pipeline_that_takes_a_mask_gets_the_requests_mask(pipelines: Pipelines) -> None:
    tool = editor(pipelines, "custom", pipeline="tests.custom_pipelines:MaskedRenamedPipeline",
                  arguments={"prompt": "text", "image": "input_image", "num_inference_steps": "steps",
                             "mask": "mask_img"})
    source = picture(32, 32)
    left = np.zeros((32, 32, 3), np.uint8)
    left[:, :16] = 255
    out = await tool.edit(EditRequest(image=source, instruction="make it red", seed=1, mask=Image(left)))
    assert np.array_equal(out.image.array[:, 16:], source.array[:, 16:])  # black: kept
    assert not np.array_equal(out.image.array[:, :16], source.array[:, :16])
    assert "mask_ignored" not in out.info
    plain = await editor(pipelines, "ip2p").edit(EditRequest(image=source, instruction="x", seed=1, mask=Image(left)))
    assert plain.info["mask_ignored"] is True


async def test_editor_and_refine_editor_on_one_folder_load_it_once(pipelines: Pipelines) -> None:
    a = editor(pipelines, "ip2p")
    b = editor(pipelines, "ip2p", guidance_scale=3.0)
    await a.load()
    await b.load()
    assert a._service is b._service and a.model_key() in model_pool()


# -- errors: one clear line, at start-up ------------------------------------------------------------------


def test_a_folder_that_is_not_a_pipeline_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        create_tool("editor", f"diffusers:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="no model_index.json"):
        create_tool("editor", f"diffusers:{tmp_path}")
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read as JSON"):
        create_tool("editor", f"diffusers:{tmp_path}")
    with pytest.raises(ConfigError, match="needs a pipeline folder"):
        create_tool("editor", "diffusers")


def test_a_pipeline_that_cannot_edit_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ConfigError, match="StableDiffusionPipeline is not an editing pipeline .*"
                                          "QwenImageEditPipeline.*pipeline=pkg.module:Class"):
        create_tool("editor", f"diffusers:{tmp_path}")


@pytest.mark.parametrize(("name", "options", "message"), [
    ("flux_kontext", {"image_guidance_scale": 1.5}, "FluxKontextPipeline does not take image_guidance_scale"),
    ("ip2p", {"true_cfg_scale": 4.0}, "does not take true_cfg_scale"),
    ("qwen_edit_plus", {"max_batch_size": 4}, "takes 1 edit.* per call"),
    ("ip2p", {"scheduler": "NoSuchScheduler"}, "not a diffusers scheduler class"),
    ("ip2p", {"device": "cuda:3"}, "not available"),
    ("ip2p", {"offload": "model", "device": "cpu"}, "on cpu use offload=none"),
    ("ip2p", {"nonsense": 1}, "nonsense"),
    ("flux_kontext", {"max_area": 4096}, "max_area sets the size for output_size=native"),
    ("custom", {"arguments": {"prompt": "words"}}, "has no argument words"),
    ("ip2p", {"custom_pipeline": "pipeline.py"}, "trust_remote_code=true"),
])
def test_options_the_pipeline_does_not_take_fail_at_start_up(pipelines: Pipelines, name: str,
                                                              options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        editor(pipelines, name, **options)


async def test_a_missing_or_damaged_weight_file_is_one_line_at_load(pipelines: Pipelines, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    shutil.copytree(pipelines("ip2p"), missing)
    for weights in (missing / "unet").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ConfigError, match=f"cannot load the StableDiffusionInstructPix2PixPipeline pipeline from "
                                          f"{missing}: a weight file is missing: .*unet"):
        await create_tool("editor", f"diffusers:{missing}").load()
    damaged = tmp_path / "damaged"
    shutil.copytree(pipelines("ip2p"), damaged)
    for weights in (damaged / "unet").glob("*.safetensors"):
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(ConfigError, match="the weight file .*unet.* is damaged"):
        await create_tool("editor", f"diffusers:{damaged}").load()


def test_the_identity_holds_the_folder_fingerprint_and_what_changes_outputs(pipelines: Pipelines) -> None:
    a = editor(pipelines, "ip2p", max_batch_size=2).identity()["params"]
    b = editor(pipelines, "ip2p", max_batch_size=8, batch_wait_ms=50).identity()["params"]
    c = editor(pipelines, "ip2p", guidance_scale=2.0).identity()["params"]
    assert a == b  # batching changes nothing beyond float precision
    assert a != c and a["fingerprint"] and a["dtype"] == "float32" and a["path"] == str(pipelines("ip2p"))
