"""Builders for tiny dataset files in each benchmark's real schema (used by tests/test_datasets.py)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

IMAGE_STRUCT_FIELDS = (("bytes", "binary"), ("path", "string"))


def png_bytes(value: int, size: tuple[int, int] = (8, 6)) -> bytes:
    """A tiny PNG of one grey level; ``size`` is (width, height)."""
    arr = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(value, size))
    return path


def hf_image(value: int | None, size: tuple[int, int] = (8, 6), path: str | None = None) -> dict[str, Any]:
    """A Hugging Face Image feature value: {bytes, path}."""
    return {"bytes": None if value is None else png_bytes(value, size), "path": path}


def _type(pa: Any, kind: str) -> Any:
    if kind == "image":
        return pa.struct([(name, getattr(pa, t)()) for name, t in IMAGE_STRUCT_FIELDS])
    if kind == "images":
        return pa.list_(_type(pa, "image"))
    return {"string": pa.string(), "float": pa.float64(), "bool": pa.bool_(), "int": pa.int64()}[kind]


def table(rows: Sequence[dict[str, Any]], schema: dict[str, str]) -> Any:
    import pyarrow as pa

    fields = [pa.field(name, _type(pa, kind)) for name, kind in schema.items()]
    return pa.Table.from_pylist(list(rows), schema=pa.schema(fields))


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], schema: dict[str, str], row_group_size: int = 2) -> Path:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table(rows, schema), path, row_group_size=row_group_size)
    return path


def write_save_to_disk(root: Path, rows: Sequence[dict[str, Any]], schema: dict[str, str], shards: int = 2,
                       split: str | None = "train") -> Path:
    """A ``Dataset.save_to_disk`` folder: Arrow stream shards, state.json and dataset_info.json."""
    import pyarrow as pa

    root.mkdir(parents=True, exist_ok=True)
    t = table(rows, schema)
    per = max(1, -(-len(rows) // shards))
    names = []
    for i in range(shards):
        name = f"data-{i:05d}-of-{shards:05d}.arrow"
        part = t.slice(i * per, per)
        with pa.OSFile(str(root / name), "wb") as sink, pa.ipc.new_stream(sink, t.schema) as writer:
            for batch in part.to_batches(max_chunksize=1):
                writer.write_batch(batch)
        names.append(name)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": "0" * 16, "_format_columns": None,
             "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False, "_split": split}
    (root / "state.json").write_text(json.dumps(state))
    (root / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": {}}))
    return root


GEDIT_SCHEMA = {"key": "string", "task_type": "string", "instruction": "string", "instruction_language": "string",
                "input_image": "image", "input_image_raw": "image", "Intersection_exist": "bool"}


def gedit_rows() -> list[dict[str, Any]]:
    """Two keys in English and Chinese; the Chinese one of k2 and the English k3 are bad rows."""
    def row(key: str, task: str, text: str, lang: str, image: dict[str, Any]) -> dict[str, Any]:
        return {"key": key, "task_type": task, "instruction": text, "instruction_language": lang,
                "input_image": image, "input_image_raw": hf_image(99, (16, 12)), "Intersection_exist": key != "k2"}

    return [row("k1", "color_alter", "make the car blue", "en", hf_image(10)),
            row("k1", "color_alter", "把车变成蓝色", "cn", hf_image(10)),
            row("k2", "subject-add", "add a cat", "en", hf_image(20)),
            row("k2", "subject-add", None, "cn", hf_image(20)),  # type: ignore[arg-type]
            row("k3", "text_change", "change the sign to OPEN", "en", hf_image(None, path="missing/k3.png")),
            row("k3", "text_change", "把招牌改成OPEN", "cn", hf_image(30))]


REFEDIT_SCHEMA = {"input_image": "image", "editing_instruction": "string", "edit_instruction_single": "string",
                  "mask": "string"}


def refedit_rows(n: int = 4, easy: int = 2) -> list[dict[str, Any]]:
    """``n`` rows on a 20x10 image, a box polygon around x 2..9, y 2..7; the caller picks the split size."""
    polygon = [[2, 2, 9, 2, 9, 7, 2, 7]]
    return [{"input_image": hf_image(40 + i, (20, 10)), "editing_instruction": f"make the left cup red ({i})",
             "edit_instruction_single": "make the cup red", "mask": json.dumps(polygon)} for i in range(n)]


IEBENCH_SCHEMA = {"images": "images", "edit_inst": "string", "answer": "string", "problem": "string"}


def iebench_rows(n: int, offset: int = 0) -> list[dict[str, Any]]:
    return [{"images": [hf_image(offset + i), hf_image(offset + i + 100)], "edit_inst": f"edit {offset + i}",
             "answer": f"{1 + (i % 5) * 0.9:.2f}", "problem": "<image><image> ..."} for i in range(n)]


def b64_png(value: int) -> str:
    return base64.b64encode(png_bytes(value)).decode("ascii")


def reedit_rows(root: Path) -> list[dict[str, Any]]:
    """RE-Edit rows (the JSON goes in ``root``): two embedded images, one by path, one wrong-typed instruction."""
    write_png(root / "gen" / "00002_社会_hard.png", 70)
    base = {"original_description": "一只猫", "edit_instruction": "把光改为从右上方照射", "rationale_short": "阴影方向",
            "tags": ["indoor"], "seed": 42}
    return [
        {**base, "subset": "物理", "src_img_b64": b64_png(50), "difficulty": "medium",
         "original_description_en": "A cat on a sunlit floor", "edit_instruction_en": "Light from the upper right",
         "rationale_short_en": "Shadows must flip to the lower left",
         "original_image_path": "gen/00000_物理_medium.png"},
        {**base, "subset": "环境", "src_img_b64": "data:image/png;base64," + b64_png(60), "difficulty": "easy",
         "original_description_en": "A dry street", "edit_instruction_en": "Make it rain",
         "rationale_short_en": "Wet ground and reflections"},
        {**base, "subset": "社会", "original_image_path": "gen/00002_社会_hard.png", "difficulty": "hard",
         "original_description_en": "A classroom", "edit_instruction_en": "Make it the last day of school",
         "rationale_short_en": "Cleared desks, celebration"},
        {**base, "subset": "因果", "src_img_b64": b64_png(80), "edit_instruction_en": 5,
         "original_description_en": "x", "rationale_short_en": "y"},
    ]
