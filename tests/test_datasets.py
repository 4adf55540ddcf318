"""Dataset loaders: each format from tiny files in its real schema, bad rows, missing paths, options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from refine_agent.benchmarks.datasets import DATASET_KINDS, Dataset, DatasetError, Sample, SampleError, load_dataset
from refine_agent.benchmarks.datasets.refedit import parse_polygons, render_polygons
from refine_agent.benchmarks.datasets.rows import RowError

from refine_agent.errors import MissingExtraError
from refine_agent.images import Image

from .dataset_files import (
    GEDIT_SCHEMA,
    IEBENCH_SCHEMA,
    REFEDIT_SCHEMA,
    gedit_rows,
    hf_image,
    iebench_rows,
    reedit_rows,
    refedit_rows,
    write_parquet,
    write_png,
    write_save_to_disk,
)

pytest.importorskip("pyarrow")


def split_items(ds: Dataset) -> tuple[list[Sample], list[SampleError]]:
    items = list(ds)
    return [i for i in items if isinstance(i, Sample)], [i for i in items if isinstance(i, SampleError)]


def grey(ref: Any) -> int:
    return int(ref.load().array[0, 0, 0])


# --- dispatch, options, missing paths -------------------------------------------------------------------


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("pie:/data/pie")
    for kind in DATASET_KINDS:
        assert kind in str(err.value)


def test_unknown_option_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="valid options: language"):
        load_dataset(f"gedit:{tmp_path}", options={"lang": "en"})
    with pytest.raises(DatasetError, match="split"):
        load_dataset(f"refedit:{tmp_path}", options={"split": "medium"})
    with pytest.raises(DatasetError, match="root"):
        load_dataset(f"jsonl:{tmp_path}", options={"nope": 1})


@pytest.mark.parametrize("kind,expected", [("gedit", "GEdit-Bench"), ("refedit", "RefEdit-Bench"),
                                           ("re-edit", "RE-Edit JSON"), ("iebench", "IE-Bench-4k"),
                                           ("jsonl", "JSON Lines manifest")])
def test_missing_path_says_where_and_what(tmp_path: Path, kind: str, expected: str) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset(f"{kind}:{tmp_path / 'nowhere'}")
    msg = str(err.value)
    assert "nowhere" in msg and expected in msg and "never downloaded" in msg


def test_missing_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet(tmp_path / "g.parquet", gedit_rows(), GEDIT_SCHEMA)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"refine-agent\[bench\]"):
        load_dataset(f"gedit:{tmp_path / 'g.parquet'}")


# --- synthetic ----------------------------------------------------------------------------------------------


def test_synthetic_size_is_the_limit_and_carries_truth() -> None:
    ds = load_dataset("synthetic", limit=3, seed=1)
    assert ds.size == 3 and ds.spec == "synthetic"
    samples, errors = split_items(ds)
    assert [s.id for s in samples] == ["syn-1-00000", "syn-1-00001", "syn-1-00002"] and not errors
    assert all(s.category in ds.categories for s in samples)  # type: ignore[operator]
    assert samples[0].source.image is not None and set(samples[0].extra) == {"difficulty", "truth"}
    assert load_dataset("synthetic").size == 100
    with pytest.raises(DatasetError, match="no path"):
        load_dataset("synthetic:/tmp/x")


# --- jsonl manifest and EvalScope join --------------------------------------------------------------------


def test_jsonl_reads_what_datasets_make_writes(tmp_path: Path) -> None:
    from refine_agent.tools.synthetic.generate import write_dataset

    write_dataset(tmp_path, 3, seed=2)
    ds = load_dataset(f"jsonl:{tmp_path}")
    samples, errors = split_items(ds)
    assert ds.size == 3 and not errors
    generated = load_dataset("synthetic", limit=3, seed=2)
    for got, want in zip(samples, generated, strict=True):
        assert isinstance(want, Sample)
        assert (got.id, got.instruction, got.category) == (want.id, want.instruction, want.category)
        assert got.source.load() == want.source.load()
        assert got.extra["difficulty"] == want.extra["difficulty"] and "truth" in got.extra


def write_manifest(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_bad_rows_become_errors_and_the_rest_load(tmp_path: Path) -> None:
    write_png(tmp_path / "img" / "a.png", 10)
    write_png(tmp_path / "img" / "a_edit.png", 11)
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"id": "a", "source": "img/a.png", "instruction": "make it red", "category": "color",
         "edited": "img/a_edit.png", "context": {"hint": "the cup"}, "difficulty": "easy"},
        {"id": "b", "source": "img/missing.png", "instruction": "x"},
        {"id": "c", "source": "img/a.png", "instruction": 5},
        "{not json",
        {"source": "img/a.png", "instruction": "no id"},
        {"id": "a", "source": "img/a.png", "instruction": "again"},
        {"id": 7, "source": "img/a.png", "instruction": "int id"},
        {"id": "p", "image_path": "img/a_edit.png"},
    ])
    ds = load_dataset(f"jsonl:{manifest}")
    assert ds.size == 8
    samples, errors = split_items(ds)
    assert [s.id for s in samples] == ["a", "7"]
    a = samples[0]
    assert (a.category, a.context, a.extra) == ("color", {"hint": "the cup"}, {"difficulty": "easy"})
    assert grey(a.source) == 10 and a.edited is not None and grey(a.edited) == 11
    by_id = {e.id: e.error for e in errors}
    assert "missing.png does not exist" in by_id["b"]
    assert "'instruction' should be a string, got int" in by_id["c"]
    assert "line 4" in by_id["#row-3"]  # made-up ids of rows without one: no real id can take this form
    assert "missing field 'id'" in by_id["#row-4"]
    assert "duplicate id 'a'" in by_id["#row-5:a"]
    assert "join=" in by_id["p"]
    limited = load_dataset(f"jsonl:{manifest}", limit=2)
    assert limited.size == 2 and len(list(limited)) == 2


def test_jsonl_joins_evalscope_predictions_to_gedit(tmp_path: Path) -> None:
    bench = write_save_to_disk(tmp_path / "gedit", gedit_rows(), GEDIT_SCHEMA)
    write_png(tmp_path / "out" / "images" / "k1_0.png", 123)
    preds = write_manifest(tmp_path / "out" / "example_edit.jsonl", [
        {"id": "k1", "image_path": "images/k1_0.png"},
        {"id": "k2", "image_path": "images/k2_0.png"},  # not generated
        {"id": "k9", "image_path": "images/k1_0.png"},  # not in the benchmark
    ])
    ds = load_dataset(f"jsonl:{preds}", options={"join": f"gedit:{bench}"})
    assert ds.size == 3 and ds.categories is not None and len(ds.categories) == 11
    samples, errors = split_items(ds)
    assert [s.id for s in samples] == ["k1"]
    k1 = samples[0]
    assert k1.instruction == "make the car blue" and k1.category == "color_alter"
    assert grey(k1.source) == 10 and k1.edited is not None and grey(k1.edited) == 123
    by_id = {e.id: e for e in errors}
    assert "k2_0.png does not exist" in by_id["k2"].error
    assert by_id["k9"].kind == "unknown_id" and "k9" in by_id["k9"].error

    cn = load_dataset(f"jsonl:{preds}", options={"join": f"gedit:{bench}", "language": "cn", "missing": "error"})
    samples, errors = split_items(cn)
    assert [s.instruction for s in samples] == ["把车变成蓝色"]
    assert {e.id for e in errors} == {"k2", "k3", "k9"}
    assert next(e for e in errors if e.id == "k3").kind == "missing_edit"


# --- GEdit-Bench --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet"])
def test_gedit_filters_language_and_keeps_going_after_bad_rows(tmp_path: Path, layout: str) -> None:
    if layout == "save_to_disk":
        root = write_save_to_disk(tmp_path / "GEdit-Bench", gedit_rows(), GEDIT_SCHEMA, shards=3)
    else:
        root = tmp_path / "snapshot"
        write_parquet(root / "data" / "train-00000-of-00001.parquet", gedit_rows(), GEDIT_SCHEMA)
    ds = load_dataset(f"gedit:{root}")
    assert ds.size == 3 and ds.info["macro"] == "mean of the task-type means (official)"
    assert ds.categories is not None and len(ds.categories) == 11 and "subject-add" in ds.categories
    samples, errors = split_items(ds)
    assert [(s.id, s.category) for s in samples] == [("k1", "color_alter"), ("k2", "subject-add")]
    assert samples[0].source.data is not None and samples[0].source.image is None  # not decoded yet
    assert grey(samples[0].source) == 10 and samples[0].source.load().size == (8, 6)
    assert samples[0].extra == {"language": "en", "intersection": True}
    assert [e.id for e in errors] == ["k3"] and "missing/k3.png does not exist" in errors[0].error

    cn = load_dataset(f"gedit:{root}", options={"language": "cn"})
    samples, errors = split_items(cn)
    assert [s.id for s in samples] == ["k1", "k3"] and samples[1].instruction == "把招牌改成OPEN"
    assert [e.id for e in errors] == ["k2"] and "field 'instruction' is null" in errors[0].error  # a table's null

    one = load_dataset(f"gedit:{root}", limit=1)
    assert one.size == 1 and [i.id for i in one] == ["k1"]


def test_gedit_reads_a_single_arrow_file_in_file_format(tmp_path: Path) -> None:
    import pyarrow as pa

    from .dataset_files import table

    path = tmp_path / "gedit.arrow"
    t = table(gedit_rows(), GEDIT_SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, t.schema) as writer:
        writer.write_table(t)
    assert [i.id for i in load_dataset(f"gedit:{path}")] == ["k1", "k2", "k3"]


def test_gedit_wrong_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x.parquet", iebench_rows(2), IEBENCH_SCHEMA)
    with pytest.raises(DatasetError, match="no column key"):
        load_dataset(f"gedit:{tmp_path / 'x.parquet'}")


# --- RefEdit-Bench ------------------------------------------------------------------------------------------


def test_refedit_splits_instructions_and_masks(tmp_path: Path) -> None:
    root = tmp_path / "RefEdit-Bench"
    write_parquet(root / "data" / "test-00000-of-00001.parquet", refedit_rows(103), REFEDIT_SCHEMA, 16)
    ds = load_dataset(f"refedit:{root}")
    assert ds.size == 103 and ds.categories == ["easy", "hard"] and ds.info["mask_dilation_px"] == 7
    hard = load_dataset(f"refedit:{root}", options={"split": "hard"})
    samples, errors = split_items(hard)
    assert hard.size == 3 and not errors
    assert [s.id for s in samples] == ["refedit-100", "refedit-101", "refedit-102"]
    s = samples[0]
    assert s.category == "hard" and s.extra["split"] == "hard"
    assert s.instruction == "make the left cup red (100)"
    assert s.context == {"masked_instruction": "make the cup red"}
    easy = load_dataset(f"refedit:{root}", options={"split": "easy"}, limit=5)
    assert easy.size == 5 and {i.category for i in easy} == {"easy"}  # type: ignore[union-attr]
    single = load_dataset(f"refedit:{root}", options={"instruction": "edit_instruction_single"}, limit=1)
    assert next(iter(single)).instruction == "make the cup red"  # type: ignore[union-attr]

    assert s.mask is not None
    mask = s.mask.load()
    assert mask.size == s.source.load().size == (20, 10)
    assert mask.array[4, 5].tolist() == [255, 255, 255] and mask.array[4, 15].tolist() == [0, 0, 0]
    assert mask.array[0, 0].tolist() == [0, 0, 0]


def test_refedit_json_rows_normalised_polygons_and_bad_rows(tmp_path: Path) -> None:
    write_png(tmp_path / "images" / "0.png", 40, (20, 10))
    good = {"input_image": "images/0.png", "editing_instruction": "make the left cup red",
            "edit_instruction_single": "make the cup red",
            "mask": [[[0.1, 0.2], [0.45, 0.2], [0.45, 0.7], [0.1, 0.7]]]}
    rows = [good, {**good, "input_image": "images/missing.png"}, {**good, "mask": "[1, 2]"},
            {**good, "editing_instruction": 5}, {k: v for k, v in good.items() if k != "mask"}]
    path = tmp_path / "refedit.jsonl"
    write_manifest(path, rows)
    samples, errors = split_items(load_dataset(f"refedit:{path}"))
    assert [s.id for s in samples] == ["refedit-000"]
    assert samples[0].mask is not None
    mask = samples[0].mask.load()
    assert mask.array[4, 5, 0] == 255 and mask.array[4, 15, 0] == 0
    messages = {e.id: e.error for e in errors}
    assert "missing.png does not exist" in messages["refedit-001"]
    assert "even number" in messages["refedit-002"]
    assert "'editing_instruction' should be a string" in messages["refedit-003"]
    assert "missing field 'mask'" in messages["refedit-004"]


def test_polygon_formats_dilation_and_masking() -> None:
    flat = parse_polygons("[[2, 2, 9, 2, 9, 7, 2, 7], [12, 1, 14, 1, 14, 3]]")
    assert len(flat) == 2 and flat[0][1] == (9.0, 2.0)
    assert parse_polygons([[2, 2], [9, 2], [9, 7]]) == [((2.0, 2.0), (9.0, 2.0), (9.0, 7.0))]
    with pytest.raises(RowError):
        parse_polygons({"counts": "rle"})
    mask = render_polygons(flat[:1], (20, 10))
    assert mask.array[4, 11, 0] == 0
    # The dataset's own mask helpers duplicated the judge's masking and are gone: the same checks, through it
    # (a white image masked by the grown polygon is the grown polygon).
    from refine_agent.tools.judges.masking import masked as apply_mask

    white = Image(np.full((10, 20, 3), 255, dtype=np.uint8))

    def dilate_mask(mask: Image, pixels: int) -> Image:
        return apply_mask(white, mask, pixels)

    assert dilate_mask(mask, 2).array[4, 11, 0] == 255 and dilate_mask(mask, 1).array[4, 11, 0] == 0
    assert dilate_mask(mask, 0) == mask
    photo = Image(np.full((10, 20, 3), 200, dtype=np.uint8))
    masked = apply_mask(photo, mask)
    assert masked.array[4, 5, 0] == 200 and masked.array[4, 15, 0] == 0
    big = Image(np.full((20, 40, 3), 200, dtype=np.uint8))
    assert apply_mask(big, mask).array[8, 10, 0] == 200 and apply_mask(big, mask).array[8, 30, 0] == 0


# --- RE-Edit ------------------------------------------------------------------------------------------------


def test_reedit_rows_context_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "version_2_with_imagesb64.json"
    path.write_text(json.dumps(reedit_rows(tmp_path), ensure_ascii=False), encoding="utf-8")
    ds = load_dataset(f"re-edit:{path}")
    assert ds.size == 4 and ds.categories == ["物理", "环境", "社会", "因果"]
    samples, errors = split_items(ds)
    assert [s.id for s in samples] == ["re-edit-00000-物理", "re-edit-00001-环境", "re-edit-00002-社会"]
    first = samples[0]
    assert first.instruction == "Light from the upper right" and first.category == "物理"
    assert first.context == {"original_description": "A cat on a sunlit floor",
                             "rationale": "Shadows must flip to the lower left"}
    assert first.extra["difficulty"] == "medium" and "src_img_b64" not in first.extra
    assert [grey(s.source) for s in samples] == [50, 60, 70]
    assert [e.id for e in errors] == ["re-edit-00003-因果"]
    assert "'edit_instruction_en' should be a string, got int" in errors[0].error

    zh = load_dataset(f"re-edit:{path}", options={"language": "zh"}, limit=1)
    sample = next(iter(zh))
    assert isinstance(sample, Sample) and sample.instruction == "把光改为从右上方照射"
    assert sample.context["rationale"] == "阴影方向"


def test_reedit_object_grouped_by_subset(tmp_path: Path) -> None:
    rows = reedit_rows(tmp_path)[:2]
    grouped = {r.pop("subset"): [r] for r in rows}
    (tmp_path / "re_edit.json").write_text(json.dumps(grouped, ensure_ascii=False), encoding="utf-8")
    samples, errors = split_items(load_dataset(f"re-edit:{tmp_path}"))
    assert [s.category for s in samples] == ["物理", "环境"] and not errors


# --- IE-Bench -----------------------------------------------------------------------------------------------


def test_iebench_hub_snapshot_splits_and_mos(tmp_path: Path) -> None:
    root = tmp_path / "IE-Bench-4k"
    write_parquet(root / "data" / "train-00000-of-00001.parquet", iebench_rows(2, offset=50), IEBENCH_SCHEMA)
    test_rows = iebench_rows(4)
    test_rows[2]["answer"] = "n/a"
    test_rows[3]["images"] = [hf_image(1)]
    write_parquet(root / "data" / "test-00000-of-00001.parquet", test_rows, IEBENCH_SCHEMA)
    ds = load_dataset(f"iebench:{root}")
    assert ds.size == 4
    samples, errors = split_items(ds)
    assert [s.id for s in samples] == ["iebench-test-00000", "iebench-test-00001"]
    s = samples[1]
    assert s.instruction == "edit 1" and s.extra == {"mos": pytest.approx(1.9)}
    assert s.edited is not None and grey(s.source) == 1 and grey(s.edited) == 101
    messages = {e.id: e.error for e in errors}
    assert "'answer' should be a number" in messages["iebench-test-00002"]
    assert "[source, edited], got 1 items" in messages["iebench-test-00003"]
    everything = load_dataset(f"iebench:{root}", options={"split": "all"})
    assert everything.size == 6 and len(list(everything)) == 6
    assert load_dataset(f"iebench:{root}", options={"split": "train"}, limit=1).size == 1


def test_iebench_json_with_image_paths(tmp_path: Path) -> None:
    write_png(tmp_path / "src" / "0.png", 5)
    write_png(tmp_path / "edit" / "0.png", 6)
    rows = [{"images": ["src/0.png", "edit/0.png"], "edit_inst": "add a hat", "answer": 3.5},
            {"images": ["src/0.png", "edit/missing.png"], "edit_inst": "add a hat", "answer": 2}]
    (tmp_path / "ie_bench.json").write_text(json.dumps(rows))
    samples, errors = split_items(load_dataset(f"iebench:{tmp_path / 'ie_bench.json'}"))
    assert [(s.id, s.extra["mos"]) for s in samples] == [("iebench-00000", 3.5)]
    assert samples[0].edited is not None and grey(samples[0].edited) == 6
    assert "missing.png does not exist" in errors[0].error


def test_iebench_dataset_dict_saved_to_disk(tmp_path: Path) -> None:
    root = tmp_path / "ie4k"
    write_save_to_disk(root / "train", iebench_rows(3, offset=50), IEBENCH_SCHEMA, split="train")
    write_save_to_disk(root / "test", iebench_rows(2), IEBENCH_SCHEMA, split="test")
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    ds = load_dataset(f"iebench:{root}")
    assert ds.size == 2 and [i.id for i in ds] == ["iebench-test-00000", "iebench-test-00001"]
    assert load_dataset(f"iebench:{root}", options={"split": "train"}).size == 3
    with pytest.raises(DatasetError, match="no 'test' split"):
        load_dataset(f"iebench:{root / 'train'}")


def test_join_passes_other_options_to_the_benchmark(tmp_path: Path) -> None:
    bench = write_save_to_disk(tmp_path / "gedit", gedit_rows(), GEDIT_SCHEMA)
    preds = write_manifest(tmp_path / "p.jsonl", [{"id": "k1", "image_path": "x.png"}])
    with pytest.raises(DatasetError, match="valid options: language"):
        load_dataset(f"jsonl:{preds}", options={"join": f"gedit:{bench}", "lang": "cn"})
    with pytest.raises(DatasetError, match="needs join"):
        load_dataset(f"jsonl:{preds}", options={"missing": "error"})
