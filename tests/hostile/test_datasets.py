"""Hostile dataset files and ``datasets make`` misuse: BOMs, broken rows, paths that leave the dataset, clobbered
manifests, huge or negative numbers and Ctrl-C. Each case checks the exit code, one readable line, that no file
the command does not own changed, and that no row went missing without a record."""

from __future__ import annotations

import codecs
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from refine_agent.benchmarks.datasets import Sample, SampleError, load_dataset
from refine_agent.tools.synthetic import generate
from refine_agent.tools.synthetic.generate import write_dataset

from refine_agent.config import read_config_file
from refine_agent.errors import ConfigError, InputError
from tests.dataset_files import GEDIT_SCHEMA, hf_image, write_parquet, write_png, write_save_to_disk
from tests.hostile.conftest import changed, cli, error_line, snapshot

# -- helpers -------------------------------------------------------------------------------------------------------


def _manifest(root: Path, n: int = 3) -> list[str]:
    """A small synthetic dataset in ``root``; its manifest lines."""
    write_dataset(root, n, seed=1)
    return (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()


def _records(run: Path) -> dict[str, tuple[int, str, str | None]]:
    """sample id -> (index, status, error), read straight from the store, read-only."""
    db = sqlite3.connect(f"file:{run / 'records.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT sample_id, idx, status, error FROM samples").fetchall()
    finally:
        db.close()
    return {sid: (idx, status, error) for sid, idx, status, error in rows}


def _bench(dataset: str, run: Path, *extra: str) -> Any:
    return cli("bench", dataset, "--run-dir", str(run), "--budgets", "0,1", *extra)


def _loaded(spec: str, **options: Any) -> list[Sample | SampleError]:
    return list(load_dataset(spec, options=options or None))


def _errors(items: list[Sample | SampleError]) -> list[str]:
    return [i.error for i in items if isinstance(i, SampleError)]


# -- BOMs and encodings --------------------------------------------------------------------------------------------


def test_bom_manifest_keeps_row_0(tmp_path: Path) -> None:
    lines = _manifest(tmp_path / "ds")
    (tmp_path / "ds" / "bom.jsonl").write_bytes(codecs.BOM_UTF8 + "\n".join(lines).encode() + b"\n")
    before = snapshot(tmp_path / "ds")
    r = _bench(f"jsonl:{tmp_path / 'ds' / 'bom.jsonl'}", tmp_path / "run")
    assert r.exit_code == 0, r.output
    records = _records(tmp_path / "run")
    assert len(records) == 3 and all(status == "done" for _, status, _ in records.values()), records
    assert json.loads(lines[0])["id"] in records  # row 0 is there, scored
    assert changed(before, snapshot(tmp_path / "ds")) == []


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_manifest_in_any_bom_encoding_loads_every_row(tmp_path: Path, encoding: str) -> None:
    lines = _manifest(tmp_path)
    (tmp_path / "m.jsonl").write_bytes("\r\n".join(lines).encode(encoding))  # Windows line ends too
    items = _loaded(f"jsonl:{tmp_path / 'm.jsonl'}")
    assert [i.id for i in items] == [json.loads(line)["id"] for line in lines]
    assert _errors(items) == []


def test_concatenated_bom_files_keep_every_row(tmp_path: Path) -> None:
    # `cat a.jsonl b.jsonl` of two Windows-saved files puts a BOM at the start of a middle line.
    lines = _manifest(tmp_path)
    part = [codecs.BOM_UTF8 + "\n".join(lines[:2]).encode() + b"\n", codecs.BOM_UTF8 + lines[2].encode() + b"\n"]
    (tmp_path / "m.jsonl").write_bytes(b"".join(part))
    items = _loaded(f"jsonl:{tmp_path / 'm.jsonl'}")
    assert len(items) == 3 and _errors(items) == []


@pytest.mark.parametrize("suffix, text", [(".json", '{"seed": 3}'), (".yaml", "seed: 3\n"), (".toml", "seed = 3\n")])
def test_config_file_with_bom_is_read(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_bytes(codecs.BOM_UTF8 + text.encode())
    assert read_config_file(path) == {"seed": 3}
    path.write_bytes(text.encode("utf-16"))
    assert read_config_file(path) == {"seed": 3}


def test_config_file_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(b"judge: verify\nnote: caf\xe9\n")  # Latin-1, not UTF-8: no silent replacement
    with pytest.raises(ConfigError, match=r"run\.yaml is not UTF-8 text"):
        read_config_file(path)
    before = snapshot(tmp_path)
    r = cli("bench", "synthetic", "--limit", "1", "--run-dir", str(tmp_path / "run"), "--config", str(path))
    line = error_line(r.output, r.exit_code, 2)
    assert "run.yaml" in line and "UTF-8" in line
    assert changed(before, snapshot(tmp_path), owned=("run",)) == []


def test_bench_with_bom_json_config_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "run.json"
    cfg.write_bytes(codecs.BOM_UTF8 + b'{"judge": "verify", "seed": 2}')
    r = cli("bench", "synthetic", "--limit", "2", "--run-dir", str(tmp_path / "run"), "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert len(_records(tmp_path / "run")) == 2


@pytest.mark.parametrize("kind", ["re-edit", "refedit", "iebench"])
def test_json_dataset_files_with_bom_load(tmp_path: Path, kind: str) -> None:
    write_png(tmp_path / "a.png", 10)
    write_png(tmp_path / "b.png", 20)
    row = {"re-edit": {"subset": "physics", "edit_instruction_en": "x", "original_image_path": "a.png"},
           "refedit": {"input_image": "a.png", "editing_instruction": "x", "mask": [[0, 0, 4, 0, 4, 4]]},
           "iebench": {"images": ["a.png", "b.png"], "edit_inst": "x", "answer": "3.5"}}[kind]
    path = tmp_path / "data.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps([row, row]).encode())
    items = _loaded(f"{kind}:{path}")
    assert len(items) == 2 and _errors(items) == [], items


def test_save_to_disk_metadata_with_bom_loads(tmp_path: Path) -> None:
    rows = [{"key": "k1", "task_type": "color_alter", "instruction": "make it blue", "instruction_language": "en",
             "input_image": hf_image(10), "input_image_raw": None, "Intersection_exist": True}]
    root = write_save_to_disk(tmp_path / "gedit", rows, GEDIT_SCHEMA, shards=1)
    state = root / "state.json"
    state.write_bytes(codecs.BOM_UTF8 + state.read_bytes())
    items = _loaded(f"gedit:{root}")
    assert [i.id for i in items] == ["k1"] and _errors(items) == []


# -- broken rows: an error record each, never gone -----------------------------------------------------------------


def test_broken_line_in_the_middle_is_an_error_record(tmp_path: Path) -> None:
    lines = _manifest(tmp_path / "ds")
    broken = [lines[0], '{"id": "cut", "source": ', lines[1], "[1, 2]", "\xff\xfe not text", lines[2]]
    data = b"\n".join(line.encode("latin-1") if line.startswith("\xff") else line.encode() for line in broken)
    (tmp_path / "ds" / "broken.jsonl").write_bytes(data + b"\n")
    before = snapshot(tmp_path / "ds")
    r = _bench(f"jsonl:{tmp_path / 'ds' / 'broken.jsonl'}", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "load_error 3" in r.output  # the summary says how many rows failed to load
    records = _records(tmp_path / "run")
    assert len(records) == 6  # every line has a record
    failed = sorted(err for _, status, err in records.values() if status == "error")
    assert len(failed) == 3
    assert any("line 2: not valid JSON" in e for e in failed)
    assert any("line 4 should be a JSON object" in e for e in failed)
    assert any("line 5: holds bytes that are not UTF-8 text" in e for e in failed)
    assert sum(status == "done" for _, status, _ in records.values()) == 3
    assert changed(before, snapshot(tmp_path / "ds")) == []


@pytest.mark.parametrize("source, reason", [("a" * 5000, "File name too long"), ("a\x00b", "does not exist"),
                                            (7, "should be a string"), (None, "field 'source' is null")])
def test_hostile_image_field_is_one_rows_error(tmp_path: Path, source: Any, reason: str) -> None:
    lines = _manifest(tmp_path)
    bad = json.dumps({"id": "bad", "source": source, "instruction": "x"})
    (tmp_path / "m.jsonl").write_text("\n".join([lines[0], bad, lines[1]]) + "\n", encoding="utf-8")
    items = _loaded(f"jsonl:{tmp_path / 'm.jsonl'}")
    errors = _errors(items)
    assert len(items) == 3 and len(errors) == 1 and reason in errors[0], errors
    assert "\n" not in errors[0] and "\x00" not in errors[0] and len(errors[0]) < 400


def test_gedit_row_in_unknown_language_is_an_error_not_dropped(tmp_path: Path) -> None:
    rows = [{"key": k, "task_type": "color_alter", "instruction": "x", "instruction_language": lang,
             "input_image": hf_image(10), "input_image_raw": None, "Intersection_exist": True}
            for k, lang in (("k1", "en"), ("k2", "fr"), ("k3", "cn"))]
    path = write_parquet(tmp_path / "data" / "train-00000.parquet", rows, GEDIT_SCHEMA)
    ds = load_dataset(f"gedit:{path}")
    items = list(ds)
    assert ds.size == len(items) == 2
    assert [i.id for i in items] == ["k1", "k2"]
    assert "instruction_language" in _errors(items)[0]


# -- confine=true ----------------------------------------------------------------------------------------------------


def _escaping_manifest(tmp_path: Path) -> Path:
    """A manifest in ds/ whose rows 1-3 name images outside ds/: by ../, by absolute path, by a symlink."""
    lines = _manifest(tmp_path / "ds")
    outside = write_png(tmp_path / "secret.png", 99)
    os.symlink(outside, tmp_path / "ds" / "images" / "link.png")
    rows = [json.loads(lines[0]) | {"id": f"r{i}", "source": src}
            for i, src in enumerate(["../secret.png", str(outside), "images/link.png"], 1)]
    text = "\n".join([lines[0], *map(json.dumps, rows), lines[1]]) + "\n"
    (tmp_path / "ds" / "m.jsonl").write_text(text, encoding="utf-8")
    return tmp_path / "ds" / "m.jsonl"


def test_paths_outside_the_dataset_load_without_confine(tmp_path: Path) -> None:
    items = _loaded(f"jsonl:{_escaping_manifest(tmp_path)}")
    assert len(items) == 5 and _errors(items) == []  # documented: such paths are read unless confine=true


def test_confine_refuses_paths_outside_the_dataset_as_row_errors(tmp_path: Path) -> None:
    manifest = _escaping_manifest(tmp_path)
    before = snapshot(tmp_path / "ds")
    r = _bench(f"jsonl:{manifest}", tmp_path / "run", "-D", "confine=true")
    assert r.exit_code == 0, r.output
    records = _records(tmp_path / "run")
    assert len(records) == 5
    assert {sid for sid, (_, status, _) in records.items() if status == "error"} == {"r1", "r2", "r3"}
    assert all("outside the dataset root" in (err or "") for _, status, err in records.values() if status == "error")
    assert "load_error 3" in r.output
    assert changed(before, snapshot(tmp_path / "ds")) == []


def test_confine_keeps_paths_inside_the_root(tmp_path: Path) -> None:
    lines = _manifest(tmp_path / "ds")
    row = json.loads(lines[0]) | {"id": "dotted", "source": "images/../images/" + json.loads(lines[0])["source"][7:]}
    (tmp_path / "ds" / "m.jsonl").write_text("\n".join([lines[0], json.dumps(row)]) + "\n", encoding="utf-8")
    items = _loaded(f"jsonl:{tmp_path / 'ds' / 'm.jsonl'}", confine="yes")
    assert len(items) == 2 and _errors(items) == []


@pytest.mark.parametrize("kind", ["re-edit", "refedit", "iebench"])
def test_confine_in_every_path_reading_loader(tmp_path: Path, kind: str) -> None:
    write_png(tmp_path / "ds" / "a.png", 10)
    write_png(tmp_path / "secret.png", 99)

    def row(src: str) -> dict[str, Any]:
        return {"re-edit": {"subset": "physics", "edit_instruction_en": "x", "original_image_path": src},
                "refedit": {"input_image": src, "editing_instruction": "x", "mask": [[0, 0, 4, 0, 4, 4]]},
                "iebench": {"images": ["a.png", src], "edit_inst": "x", "answer": "3"}}[kind]

    path = tmp_path / "ds" / "data.json"
    path.write_text(json.dumps([row("a.png"), row("../secret.png")]), encoding="utf-8")
    assert _errors(_loaded(f"{kind}:{path}")) == []
    errors = _errors(_loaded(f"{kind}:{path}", confine=True))
    assert len(errors) == 1 and "outside the dataset root" in errors[0]


def test_confine_in_gedit_struct_paths(tmp_path: Path) -> None:
    write_png(tmp_path / "secret.png", 99)
    # An HF Image struct with no bytes and a path, relative to the dataset root gedit/, that leaves it.
    rows = [{"key": "k1", "task_type": "color_alter", "instruction": "x", "instruction_language": "en",
             "input_image": hf_image(None, path="../secret.png"), "input_image_raw": None,
             "Intersection_exist": True}]
    root = tmp_path / "gedit"
    write_parquet(root / "data" / "train-00000.parquet", rows, GEDIT_SCHEMA)
    assert _errors(_loaded(f"gedit:{root}")) == []
    errors = _errors(_loaded(f"gedit:{root}", confine=True))
    assert len(errors) == 1 and "outside the dataset root" in errors[0]


def test_confine_with_join_checks_the_predictions(tmp_path: Path) -> None:
    lines = _manifest(tmp_path / "bench")
    write_png(tmp_path / "secret.png", 99)
    ids = [json.loads(line)["id"] for line in lines]
    preds = tmp_path / "preds" / "p.jsonl"
    write_png(preds.parent / "e0.png", 5)
    preds.write_text("\n".join([json.dumps({"id": ids[0], "image_path": "e0.png"}),
                                json.dumps({"id": ids[1], "image_path": "../secret.png"})]) + "\n", encoding="utf-8")
    spec = f"jsonl:{tmp_path / 'bench' / 'manifest.jsonl'}"
    items = _loaded(f"jsonl:{preds}", join=spec, confine=True)
    errors = _errors(items)
    assert len(errors) == 1 and "outside the dataset root" in errors[0]
    assert [i.id for i in items if isinstance(i, Sample)] == [ids[0]]


def test_confine_bad_value_is_one_line(tmp_path: Path) -> None:
    _manifest(tmp_path / "ds")
    before = snapshot(tmp_path)
    r = _bench(f"jsonl:{tmp_path / 'ds'}", tmp_path / "run", "-D", "confine=maybe")
    line = error_line(r.output, r.exit_code, 2)
    assert "confine" in line and "true or false" in line
    assert changed(before, snapshot(tmp_path), owned=("run",)) == []


# -- datasets make ---------------------------------------------------------------------------------------------------


def _make(out: Path, *args: str) -> Any:
    return cli("datasets", "make", "synthetic", "--out", str(out), *args)


def _tmp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if ".tmp" in p.name]


def test_make_refuses_to_overwrite_a_manifest(tmp_path: Path) -> None:
    assert _make(tmp_path / "ds", "--n", "3").exit_code == 0
    before = snapshot(tmp_path)
    r = _make(tmp_path / "ds", "--n", "5", "--seed", "9")
    line = error_line(r.output, r.exit_code, 2)
    assert str(tmp_path / "ds" / "manifest.jsonl") in line and "--force" in line and "--out" in line
    assert changed(before, snapshot(tmp_path)) == []


def test_make_force_overwrites(tmp_path: Path) -> None:
    assert _make(tmp_path / "ds", "--n", "3").exit_code == 0
    r = _make(tmp_path / "ds", "--n", "4", "--seed", "2", "--force")
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "ds" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4 and json.loads(rows[0])["id"] == "syn-2-00000"
    assert _tmp_files(tmp_path) == []


def test_make_refuses_to_overwrite_images_without_a_manifest(tmp_path: Path) -> None:
    user = write_png(tmp_path / "ds" / "images" / "syn-0-00001.png", 7)  # someone's file, same name
    before = snapshot(tmp_path)
    r = _make(tmp_path / "ds", "--n", "3")
    line = error_line(r.output, r.exit_code, 2)
    assert str(user) in line and "--force" in line
    assert changed(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("args, words", [(("--n", "100001"), ("100000",)), (("--n", "0"), ("--n",)),
                                          (("--seed", "-1"), ("--seed",))])
def test_make_bad_numbers_are_one_line_and_write_nothing(tmp_path: Path, args: tuple[str, ...],
                                                         words: tuple[str, ...]) -> None:
    r = _make(tmp_path / "ds", *args)
    line = error_line(r.output, r.exit_code, 2)
    assert all(w in line for w in words), line
    assert "internal error" not in line
    assert not (tmp_path / "ds").exists()


def test_make_out_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)
    for out in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "sub"):
        r = _make(out, "--n", "2")
        line = error_line(r.output, r.exit_code, 2)
        assert "notes.txt" in line and "not a folder" in line
    assert changed(before, snapshot(tmp_path)) == []


def _interrupt_after(k: int) -> Any:
    real = generate.iter_samples

    def samples(n: int, seed: int = 0, start: int = 0) -> Iterator[Any]:
        for i, s in enumerate(real(n, seed, start)):
            if i == k:
                raise KeyboardInterrupt
            yield s

    return samples


def test_make_ctrl_c_in_a_fresh_folder_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "iter_samples", _interrupt_after(2))
    r = _make(tmp_path / "new" / "ds", "--n", "5")
    line = error_line(r.output, r.exit_code, 130)
    assert "interrupted" in line
    assert list(tmp_path.iterdir()) == []  # no half dataset, no temp files, no empty folders


def test_make_ctrl_c_with_force_keeps_the_old_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _make(tmp_path / "ds", "--n", "3").exit_code == 0
    before = snapshot(tmp_path)
    monkeypatch.setattr(generate, "iter_samples", _interrupt_after(2))
    r = _make(tmp_path / "ds", "--n", "5", "--seed", "4", "--force")
    error_line(r.output, r.exit_code, 130)
    assert changed(before, snapshot(tmp_path)) == []  # old manifest and images untouched, no *.tmp
    assert _tmp_files(tmp_path) == []


def test_make_ctrl_c_while_moving_into_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace
    calls = {"n": 0}

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".png") and "images" in str(dst) and ".manifest" not in str(dst):
            calls["n"] += 1
            if calls["n"] == 3:  # two images already moved into ds/images
                raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(generate.os, "replace", replace)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "readme.txt").write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)
    r = _make(tmp_path / "ds", "--n", "4")
    error_line(r.output, r.exit_code, 130)
    assert changed(before, snapshot(tmp_path)) == []  # the two moved images were taken back
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["readme.txt"]


# -- made-up ids never collide with real ones ------------------------------------------------------------------------


def test_made_up_ids_never_hide_an_error_or_drop_a_real_row(tmp_path: Path) -> None:
    lines = _manifest(tmp_path / "ds", 3)
    rows = [json.loads(line) for line in lines]
    no_id = {k: v for k, v in rows[1].items() if k != "id"}
    manifest = [rows[0] | {"id": "row-1"}, no_id, rows[1], rows[2],
                rows[2] | {"id": "row-1#1"},  # what the runner used to call row 1's record
                rows[2] | {"id": "row-1"}]  # a real repeat
    path = tmp_path / "ds" / "m.jsonl"
    path.write_text("\n".join(map(json.dumps, manifest)) + "\n", encoding="utf-8")
    r = _bench(f"jsonl:{path}", tmp_path / "run")
    assert r.exit_code == 0, r.output
    records = _records(tmp_path / "run")
    assert len(records) == 6  # every row has its own record
    assert records["row-1"][1] == records["row-1#1"][1] == "done"
    assert records["#row-1"] == (1, "error", "row 1: missing field 'id'")  # the real error, not "duplicate"
    assert records["#row-5:row-1"][1:] == ("error", "row 5: duplicate id 'row-1'")


def test_a_real_id_in_the_made_up_form_is_a_row_error(tmp_path: Path) -> None:
    lines = _manifest(tmp_path, 2)
    rows = [json.loads(line) for line in lines]
    manifest = [{k: v for k, v in rows[0].items() if k != "id"}, rows[1] | {"id": "#row-0"}]
    (tmp_path / "m.jsonl").write_text("\n".join(map(json.dumps, manifest)) + "\n", encoding="utf-8")
    items = _loaded(f"jsonl:{tmp_path / 'm.jsonl'}")
    assert [(i.id, type(i).__name__) for i in items] == [("#row-0", "SampleError"), ("#row-1", "SampleError")]
    assert "missing field 'id'" in items[0].error  # type: ignore[union-attr]
    assert "'#row-0' starts with '#row-'" in items[1].error and "reserved" in items[1].error  # type: ignore[union-attr]


def test_runner_renames_a_repeat_and_keeps_its_own_error() -> None:
    from refine_agent.benchmarks.datasets.base import Dataset, ImageRef
    from refine_agent.benchmarks.runner import _jobs

    src = ImageRef(path="a.png")
    items: list[Sample | SampleError] = [
        Sample(id="a", instruction="x", source=src),
        SampleError(id="#row-1:a", index=1, error="row 1: made up by another loader"),
        SampleError(id="a", index=1, error="row 1: bad source"),  # a loader that did not rename its repeat
        Sample(id="a", instruction="y", source=src),
        Sample(id="#row-1:a#2", instruction="z", source=src),  # not from our loaders, but must not be lost either
    ]
    jobs = list(_jobs(Dataset(spec="test", rows=iter(items))))
    ids = [item.id for _, item in jobs]
    assert len(set(ids)) == len(ids) == 5, ids
    assert ids[:2] == ["a", "#row-1:a"]
    assert ids[2] == "#row-2:a" and jobs[2][1].error == "row 1: bad source"  # type: ignore[union-attr]
    assert ids[3] == "#row-3:a" and jobs[3][1].error == "duplicate sample id 'a'"  # type: ignore[union-attr]


# -- refedit masks, re-edit nulls and a missing root -----------------------------------------------------------------


def _refedit(tmp_path: Path, masks: list[Any]) -> list[Sample | SampleError]:
    write_png(tmp_path / "a.png", 10, (8, 6))
    rows = [{"id": f"m{i}", "input_image": "a.png", "editing_instruction": "x", "mask": m} for i, m in enumerate(masks)]
    (tmp_path / "data.json").write_text(json.dumps(rows), encoding="utf-8")  # NaN is written as JSON's NaN
    return _loaded(f"refedit:{tmp_path / 'data.json'}")


def test_refedit_mask_outside_the_image_or_not_finite_is_a_row_error(tmp_path: Path) -> None:
    items = _refedit(tmp_path, [[[1, 1, 5, 1, 5, 4]], [[-9, -9, -2, -9, -2, -3]], [[1, 1], [5, 1], [float("nan"), 4]],
                                [[1, 1, float("inf"), 1, 5, 4]], [[20, 20, 30, 20, 30, 30]]])
    by_id = {i.id: i for i in items}
    assert isinstance(by_id["m0"], Sample) and by_id["m0"].mask is not None and by_id["m0"].mask.load().array.any()
    assert "lies entirely outside the image" in by_id["m1"].error  # type: ignore[union-attr]
    assert "not a finite number (nan)" in by_id["m2"].error and "got 2" not in by_id["m2"].error  # type: ignore
    assert "not a finite number (inf)" in by_id["m3"].error  # type: ignore[union-attr]
    beyond = by_id["m4"]  # past the right and bottom edges: known once the image's size is
    assert isinstance(beyond, Sample) and beyond.mask is not None
    with pytest.raises(InputError, match=r"m4 mask: the polygon lies entirely outside the 8x6 image"):
        beyond.mask.load()


def test_refedit_mask_beyond_the_image_is_a_load_error_in_bench(tmp_path: Path) -> None:
    row = json.loads(_manifest(tmp_path, 1)[0])  # a scene and an instruction the default editor can do
    w, h = PILImage.open(tmp_path / row["source"]).size
    rows = [{"id": f"m{i}", "input_image": row["source"], "editing_instruction": row["instruction"], "mask": m}
            for i, m in enumerate([[0, 0, w, 0, w, h, 0, h], [w + 1, 0, w + 9, 0, w + 9, h]])]
    (tmp_path / "data.json").write_text(json.dumps(rows), encoding="utf-8")
    r = _bench(f"refedit:{tmp_path / 'data.json'}", tmp_path / "run")
    assert r.exit_code == 0, r.output
    records = _records(tmp_path / "run")
    assert records["m0"][1] == "done"
    assert records["m1"][1] == "error" and f"entirely outside the {w}x{h} image" in (records["m1"][2] or "")
    assert "load_error 1" in r.output and "internal_error" not in r.output


def test_reedit_null_subset_says_null(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", 10)
    rows = [{"subset": None, "edit_instruction_en": "x", "original_image_path": "a.png"},
            {"edit_instruction_en": "x", "original_image_path": "a.png"}]
    (tmp_path / "data.json").write_text(json.dumps(rows), encoding="utf-8")
    errors = _errors(_loaded(f"re-edit:{tmp_path / 'data.json'}"))
    assert errors == ["row 0: field 'subset' is null", "row 1: missing field 'subset'"]


@pytest.mark.parametrize("join", [False, True])
def test_missing_root_is_one_error_up_front(tmp_path: Path, join: bool) -> None:
    lines = _manifest(tmp_path / "ds")
    spec = f"jsonl:{tmp_path / 'ds' / 'manifest.jsonl'}"
    extra = ("-D", f"join={spec}") if join else ()
    if join:
        (tmp_path / "ds" / "p.jsonl").write_text(json.dumps({"id": json.loads(lines[0])["id"],
                                                             "image_path": "e.png"}) + "\n", encoding="utf-8")
        spec = f"jsonl:{tmp_path / 'ds' / 'p.jsonl'}"
    before = snapshot(tmp_path)
    r = _bench(spec, tmp_path / "run", "-D", f"root={tmp_path / 'nonexist'}", *extra)
    line = error_line(r.output, r.exit_code, 2)
    assert f"root={tmp_path / 'nonexist'} does not exist" in line, line
    assert "row" not in line.split("option")[0]  # one error up front (error_line: exactly one), not one per row
    assert not (tmp_path / "run" / "records.sqlite").exists() or _records(tmp_path / "run") == {}
    assert changed(before, snapshot(tmp_path), owned=("run",)) == []
