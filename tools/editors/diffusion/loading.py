"""Choose the adapter, devices and dtype at start-up, and load one replica of a pipeline onto one device.

Everything that can be checked without weights is checked in ``plan()`` (before the first call): the class,
the options it takes, the scheduler name, the devices. ``load_replica()`` then runs in a worker thread; any
failure there (a missing or damaged weight file, a wrong component) becomes one line naming the folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_agent.tools.local.weights import LOADING, load_failure, resolve_dtype

from refine_agent.errors import ConfigError, MissingExtraError

from .adapters import CustomPipeline, EditAdapter, adapter_for
from .folder import PipelineFolder
from .settings import DiffusersOptions


@dataclass(frozen=True)
class Plan:
    """What to load, and where: settled before any weight is read."""

    folder: PipelineFolder
    adapter: EditAdapter
    devices: tuple[str, ...]
    dtype: str  # resolved: bfloat16, float16 or float32
    options: DiffusersOptions


def require_extra() -> None:
    for package in ("torch", "diffusers", "transformers"):
        if importlib.util.find_spec(package) is None:
            raise MissingExtraError(package, "local", "the diffusers editor")


def plan(folder: PipelineFolder, options: DiffusersOptions) -> Plan:
    """Check everything that needs no weights, and settle the adapter, devices and dtype."""
    require_extra()
    if options.custom_pipeline is not None:
        adapter: EditAdapter = CustomPipeline(pipeline_from_file(options.custom_pipeline, options), options)
    elif options.pipeline is not None:
        adapter = CustomPipeline(pipeline_from_path(options.pipeline), options)
    else:
        adapter = adapter_for(folder.class_name)
        adapter.pipeline_class()  # this diffusers has it
        if options.arguments:
            raise ConfigError("arguments maps a custom pipeline's argument names; "
                              f"{folder.class_name} is built in, so leave it out")
    adapter.check(options)
    if options.scheduler is not None:
        scheduler_class(options.scheduler)
    devices = resolve_devices(options)
    if options.offload != "none" and any(d.split(":")[0] == "cpu" for d in devices):
        raise ConfigError(f"offload={options.offload} moves weights between the CPU and a GPU; on "
                          f"{', '.join(devices)} use offload=none")
    return Plan(folder=folder, adapter=adapter, devices=devices, dtype=resolve_dtype(options.dtype, devices),
                options=options)


def pipeline_from_path(target: str) -> type:
    """A pipeline class given as ``pkg.module:Class``."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"pipeline={target}: give an import path such as my_pkg.pipelines:MyEditPipeline")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"pipeline={target}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, attr, None)
    if not inspect.isclass(cls) or not callable(getattr(cls, "from_pretrained", None)):
        raise ConfigError(f"pipeline={target}: {module_name} has no pipeline class {attr} (a DiffusionPipeline "
                          "subclass)")
    return cls


def pipeline_from_file(location: str, options: DiffusersOptions) -> type:
    """The pipeline class in a local file (or a folder's pipeline.py), as diffusers' ``custom_pipeline`` loads it.
    Its code runs, so the user must say ``trust_remote_code=true``."""
    if not options.trust_remote_code:
        raise ConfigError(f"custom_pipeline={location} runs that file's code; set -E trust_remote_code=true if you "
                          "trust it")
    path = Path(location).expanduser()
    if path.is_dir():
        path = path / "pipeline.py"
    if not path.is_file() or path.suffix != ".py":
        raise ConfigError(f"custom_pipeline={location}: no such Python file (give a .py file, or a folder with "
                          "pipeline.py)")
    name = f"refine_agent_custom_pipeline_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 (the user's code: any failure is one line)
        raise ConfigError(f"custom_pipeline={location} failed to import: {type(exc).__name__}: {exc}") from None
    from diffusers import DiffusionPipeline

    found = [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, DiffusionPipeline)
             and c is not DiffusionPipeline and c.__module__ == name]
    if len(found) != 1:
        raise ConfigError(f"custom_pipeline={location} must define exactly one DiffusionPipeline subclass "
                          f"(found {len(found)})")
    return found[0]


def scheduler_class(name: str) -> type:
    import diffusers

    cls = getattr(diffusers, name, None)
    if not inspect.isclass(cls) or not issubclass(cls, diffusers.SchedulerMixin):
        raise ConfigError(f"scheduler={name} is not a diffusers scheduler class (e.g. EulerDiscreteScheduler, "
                          "DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)")
    return cls


def resolve_devices(options: DiffusersOptions) -> tuple[str, ...]:
    import torch

    if options.devices is not None:
        devices = tuple(options.devices)
    elif options.device is not None:
        devices = (options.device,)
    else:
        devices = ("cuda",) if torch.cuda.is_available() else ("cpu",)
    for device in devices:
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            raise ConfigError(f"device {device!r} is not a torch device (e.g. cuda:0, cpu)") from None
        if parsed.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (parsed.index or 0) >= count:
                raise ConfigError(f"device {device} is not available: torch sees {count} CUDA GPU(s)")
        elif parsed.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"device {device} is not available on this machine")
        elif parsed.type not in ("cpu", "cuda", "mps", "xpu"):
            raise ConfigError(f"device {device}: the diffusers editor runs on cpu, cuda, mps or xpu")
    return devices




def load_replica(plan: Plan, device: str) -> Any:
    """Load the pipeline onto ``device`` (blocking: call it from a worker thread; one load at a time in a
    process, see ``weights.LOADING``)."""
    with LOADING:
        return _load(plan, device)


def _load(plan: Plan, device: str) -> Any:
    import torch

    options, folder = plan.options, plan.folder
    kwargs: dict[str, Any] = {"dtype": getattr(torch, plan.dtype)}
    try:
        if plan.adapter.uses_qwen_processor:
            from refine_agent.tools.local.vlm_processor import load_processor, torchvision_available

            if not torchvision_available():  # the stock processor builds a video processor, which needs it
                kwargs["processor"] = load_processor(folder.path / "processor")
        pipe = plan.adapter.pipeline_class().from_pretrained(folder.path, **kwargs)
        if options.scheduler is not None:
            pipe.scheduler = scheduler_class(options.scheduler).from_config(pipe.scheduler.config)
        if options.offload == "model":
            pipe.enable_model_cpu_offload(device=device)
        elif options.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.to(device)
    except (ConfigError, MissingExtraError):
        raise
    except Exception as exc:  # noqa: BLE001 (diffusers raises many types for a bad folder; each is one line)
        raise ConfigError(f"cannot load the {folder.class_name} pipeline from {folder.path}: "
                          f"{load_failure(exc)}") from None
    vae = getattr(pipe, "vae", None)
    if options.vae_tiling:
        _enable(vae, pipe, "tiling")
    if options.vae_slicing:
        _enable(vae, pipe, "slicing")
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def _enable(vae: Any, pipe: Any, what: str) -> None:
    method = getattr(vae, f"enable_{what}", None) or getattr(pipe, f"enable_vae_{what}", None)
    if method is None:
        raise ConfigError(f"vae_{what}: this pipeline's VAE has no {what}")
    method()
