"""Write one refinement to a directory: source.png, round_NN.png, final.png and trajectory.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .images import Image
from .loop import RefineResult


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically and durably: temp file, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_outputs(out: str | os.PathLike[str], result: RefineResult, source: Image,
                  config: dict[str, Any] | None = None) -> Path:
    """Write the run's images and trajectory.json to ``out``; return the trajectory path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("round_*.png"):
        stale.unlink()
    source.save(out / "source.png")
    traj = result.trajectory
    for rnd in traj.rounds:
        if rnd.image is not None:
            rnd.image_file = f"round_{rnd.index:02d}.png"
            result.image(rnd.index).save(out / rnd.image_file)
    best = result.best_image
    final = out / "final.png"
    if best is not None:
        best.save(final)
    elif final.exists():
        final.unlink()
    data = {"refine_agent_version": __version__, **traj.model_dump(mode="json"),
            "final_image": "final.png" if best is not None else None}
    if config is not None:
        data["config"] = config
    path = out / "trajectory.json"
    write_json(path, data)
    return path
