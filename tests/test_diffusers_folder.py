"""The diffusers editor's checks that need no torch: the folder, its fingerprint, a missing extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refine_agent.tools.editors.diffusion import loading
from refine_agent.tools.editors.diffusion.folder import read, resolve

from refine_agent.errors import ConfigError, MissingExtraError
from refine_agent.registry import create_tool, default_registry


def pipeline_folder(root: Path, class_name: str = "StableDiffusionInstructPix2PixPipeline") -> Path:
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1", "unet": ["diffusers", "UNet2DConditionModel"],
             "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "safety_checker": [None, None]}
    (root / "model_index.json").write_text(json.dumps(index))
    for part, config in (("unet", "config.json"), ("scheduler", "scheduler_config.json")):
        (root / part).mkdir()
        (root / part / config).write_text(json.dumps({"size": 1}))
    (root / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 10)
    return root


def test_the_fingerprint_follows_configs_and_weight_sizes_not_other_files(tmp_path: Path) -> None:
    folder = pipeline_folder(tmp_path)
    first = read(folder).fingerprint
    (folder / "README.md").write_text("notes")
    assert read(folder).fingerprint == first
    (folder / "unet" / "config.json").write_text(json.dumps({"size": 2}))
    second = read(folder).fingerprint
    assert second != first
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 11)
    assert read(folder).fingerprint not in (first, second)


def test_a_component_folder_that_is_missing_is_named(tmp_path: Path) -> None:
    folder = pipeline_folder(tmp_path)
    (folder / "scheduler" / "scheduler_config.json").unlink()
    (folder / "scheduler").rmdir()
    with pytest.raises(ConfigError, match="names the component 'scheduler' but the folder .* is missing"):
        read(folder)


def test_a_repo_id_is_looked_up_in_the_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="not in your Hugging Face cache.*allow_download=true"):
        resolve("someone/some-editor")
    with pytest.raises(ConfigError, match="is a file"):
        resolve(str(pipeline_folder(tmp_path) / "model_index.json"))


def test_a_missing_extra_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pipeline_folder(tmp_path)
    real = loading.importlib.util.find_spec
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name))
    with pytest.raises(MissingExtraError, match=r"needs the 'torch' package: pip install 'refine-agent\[local\]'"):
        create_tool("editor", f"diffusers:{folder}")


def test_the_editor_is_listed_with_its_extra() -> None:
    entry = next(e for e in default_registry().entries("editor") if e.name == "diffusers")
    assert entry.extra == "local" and "diffusers:PATH" in entry.summary
