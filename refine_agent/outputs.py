"""Where results are written, and the rule that keeps users' files safe: we only ever replace or delete files
this program wrote.

Each folder we write records what it wrote, name -> sha256 of the bytes (``written_by`` in trajectory.json
for ``edit``/``refine``; in ``.refine-agent.json`` for the files of report, export and ablate written to
``--out``). A file is ours only while its bytes still match. Every check runs before the first tool call,
so a refusal costs no work, and none of them creates anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_atomic, write_json
from .errors import InputError
from .images import Image
from .loop import RefineResult
from .textio import read_text

PROGRAM = "refine-agent"
LEDGER = ".refine-agent.json"  # what report, export and ablate wrote into a folder the user named
_OUR_NAMES = re.compile(r"^(source\.png|final\.png|trajectory\.json|round_\d+(_candidate_\d+)?\.png)$",
                        re.IGNORECASE)
FORCE_NOTE = "add --force to replace them (files of other names are never touched)"


class OutputConflict(InputError):
    """An output path that is not usable, or holds files this program did not write, or one of the inputs."""


def out_path(path: str | os.PathLike[str]) -> Path:
    """An output path as the OS will use it. ``a/new/..`` names ``a`` once ``new`` is made, so a path with
    ``..`` is resolved first: checks and writes must look at the same folder."""
    path = Path(path)
    return Path(os.path.realpath(path)) if ".." in path.parts else path


def sha256_of(path: Path) -> str | None:
    """The hash of a regular file's bytes; None for anything else (a FIFO planted in --out must not hang us)."""
    if not path.is_file():
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def written_by_mark(files: dict[str, str] | None = None) -> dict[str, Any]:
    """The mark a file of ours carries (``written_by``): this program, its version, and what it wrote."""
    return {"program": PROGRAM, "version": __version__, **({"files": files} if files is not None else {})}


def written_by_us(path: Path) -> dict[str, Any] | None:
    """The ``written_by`` mark of a JSON file this program wrote (it names the files it wrote), else None."""
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError):
        return None
    mark = data.get("written_by") if isinstance(data, dict) else None
    return mark if isinstance(mark, dict) and mark.get("program") == PROGRAM else None


PENDING = "pending"  # recorded just before a file is written: a run cut short still owns what it was writing


def _intact(folder: Path, mark: dict[str, Any] | None) -> dict[str, str]:
    """Of the files a mark names, those whose bytes are still the ones we wrote (or that we were writing)."""
    files = mark.get("files") if mark else None
    if not isinstance(files, dict):
        return {}
    return {str(k): str(v) for k, v in files.items() if v == PENDING or sha256_of(folder / str(k)) == v}


# -- plain path checks ----------------------------------------------------------------------------------------
def check_folder(path: Path, what: str = "--out", fix: str | None = None) -> None:
    """``path`` is a folder we can write, or one we can make: never a file, never under a file. ``fix`` says
    what to do instead (default: give another ``what``)."""
    fix = fix or f"give another {what}"
    nearest = next((p for p in (path, *path.parents) if os.path.lexists(p)), Path("."))
    if nearest.is_symlink() and not nearest.exists():
        raise OutputConflict(f"{nearest} in {what} {path} is a broken link; {fix}")
    if not nearest.is_dir():
        where = f"{what} {path} is a file" if nearest == path else f"{nearest} in {what} {path} is a file"
        raise OutputConflict(f"{where}, not a folder; {fix}")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise OutputConflict(f"{nearest} is not writable, so {what} {path} cannot be written; {fix}")


def check_file(path: Path, what: str = "--out") -> None:
    """``path`` is a file we can write: not a folder, in a folder that exists and is writable."""
    path = out_path(path)
    if path.is_dir():
        raise OutputConflict(f"{what} {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    parent = path.parent
    if not parent.is_dir():
        raise OutputConflict(f"{what} {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputConflict(f"{what} {path} is not writable; give another path")


# -- the files of report, export and ablate in a folder of the user's -------------------------------------
def check_replaceable(folder: Path, names: Iterable[str], *, force: bool, what: str = "--out") -> None:
    """Before writing ``names`` into ``folder``: each that exists must be one we wrote there, unchanged."""
    folder = out_path(folder)
    check_folder(folder, what)
    if force or not folder.is_dir():
        return
    ours = _intact(folder, written_by_us(folder / LEDGER))
    clash = [n for n in names if (folder / n).exists() and n not in ours]
    if clash:
        raise OutputConflict(f"{what} {folder} already holds {', '.join(clash[:3])}, which refine-agent did not "
                             f"write (or which changed since); use another {what}, or {FORCE_NOTE}")


def record_written(folder: Path, names: Iterable[str], *, pending: bool = False) -> None:
    """Add ``names`` (just written, or about to be when ``pending``) to the folder's ledger, keeping what it
    already lists and still holds."""
    ledger = folder / LEDGER
    new = {n: PENDING if pending else sha256_of(folder / n) or "" for n in names}
    listed = (written_by_us(ledger) or {}).get("files")
    kept = {k: v for k, v in listed.items() if k not in new} if isinstance(listed, dict) else {}
    files = {**_intact(folder, {"files": kept}), **new}  # what is about to be replaced need not be hashed
    write_json(ledger, {"written_by": written_by_mark(files)})


@dataclass
class FilesTarget:
    """Where report, export or ablate write their files: the run's own folder (ours), or a folder the user
    named with --out, where a file is only replaced if we wrote it there (recorded in the folder's ledger)."""

    folder: Path
    names: list[str]
    given: bool

    @classmethod
    def choose(cls, out: Path | None, default: Path, names: list[str], *, force: bool, what: str) -> FilesTarget:
        """Check the target before any work (nothing is created)."""
        if out is None:
            check_folder(default, f"the {what} folder", fix="pass --out DIR to write it elsewhere")
            return cls(default, names, False)
        check_replaceable(out, names, force=force)
        return cls(out_path(out), names, True)

    def open(self) -> Path:
        for name in self.names:
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        if self.given:  # before the first byte: a run cut short must not lock the user out of this folder
            record_written(self.folder, self.names, pending=True)
        return self.folder

    def close(self) -> None:
        if self.given:
            record_written(self.folder, [n for n in self.names if (self.folder / n).exists()])


# -- the output folder of edit and refine ---------------------------------------------------------------------
@dataclass
class OutputDir:
    """An output folder that has been checked: what we may replace, and what to delete as stale."""

    path: Path
    ours: dict[str, str] = field(default_factory=dict)  # earlier outputs of ours still intact: name -> sha256
    force: bool = False
    inputs: tuple[Path, ...] = ()  # never deleted, even when named like a stale output of ours

    @classmethod
    def claim(cls, path: str | os.PathLike[str], *, inputs: tuple[Path | None, ...] = (),
              force: bool = False) -> OutputDir:
        """Check ``path`` before any work, creating nothing. Raises ``OutputConflict`` (one line: what, where,
        the fix) when it is not a usable folder, holds files we did not write, or holds one of ``inputs``."""
        path = out_path(path)
        check_folder(path)
        ours = cls._ours(path, force) if path.is_dir() else {}
        given = tuple(src for src in inputs if src is not None)
        for src in given:
            if not force and _among_outputs(src, path):
                raise OutputConflict(f"the input {src} is inside the output folder and would be overwritten; "
                                     "use another --out, or add --force")
        return cls(path=path, ours=ours, force=force, inputs=given)

    @staticmethod
    def _ours(path: Path, force: bool) -> dict[str, str]:
        entries = [p.name for p in path.iterdir()]
        if not entries:
            return {}
        mark = written_by_us(path / "trajectory.json")
        if mark is None:
            if force:
                return {}
            raise OutputConflict(f"--out {path} is not empty and was not written by refine-agent; use an empty or "
                                 f"new folder, or add --force to write there (files of other names than ours are "
                                 "never touched)")
        intact = _intact(path, mark)
        clash = sorted(n for n in entries if _OUR_NAMES.match(n) and n not in intact and n != "trajectory.json")
        if clash and not force:
            raise OutputConflict(f"--out {path} holds {', '.join(clash[:3])} that refine-agent did not write (or "
                                 f"that changed since); move them, use another --out, or {FORCE_NOTE}")
        return intact

    # -- writing ----------------------------------------------------------------------------------------------
    def write(self, result: RefineResult, source: Image, config: dict[str, Any] | None = None) -> Path:
        """Write the run's images and trajectory.json; drop our own stale rounds; return the trajectory path."""
        self.path.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        encoded: dict[str, bytes] = {}  # by pixel hash: final.png is one of the rounds, encoded once

        def save(image: Image, name: str) -> None:
            data = encoded.setdefault(image.sha256, image.png_bytes())
            write_atomic(self.path / name, data)
            written[name] = hashlib.sha256(data).hexdigest()  # the bytes we wrote, not read back

        save(source, "source.png")
        traj = result.trajectory
        for rnd in traj.rounds:
            if rnd.image is not None:
                rnd.image_file = f"round_{rnd.index:02d}.png"
                save(result.image(rnd.index), rnd.image_file)
            for c in rnd.candidates:  # best-of-N: every candidate, the kept one too (it is also round_NN.png)
                if c.image is not None:
                    c.image_file = f"round_{rnd.index:02d}_candidate_{c.index:02d}.png"
                    save(result.bank.get(c.image), c.image_file)
        best = result.best_image
        if best is not None:
            save(best, "final.png")
        for name in self.ours:  # our own earlier outputs that this run did not rewrite (fewer rounds, no final)
            stale = self.path / name
            if name not in written and name != "trajectory.json" and not self._is_input(stale):
                stale.unlink(missing_ok=True)
        data = {"refine_agent_version": __version__, **traj.model_dump(mode="json"),
                "final_image": "final.png" if best is not None else None,
                "written_by": written_by_mark(written)}
        if config is not None:
            data["config"] = config
        path = self.path / "trajectory.json"
        write_json(path, data)
        return path


    def _is_input(self, path: Path) -> bool:
        return any(_same(path, src) for src in self.inputs)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _among_outputs(src: Path, out: Path) -> bool:
    """True when ``src`` is (or may be, on a case-insensitive disk) a file we would write in ``out``."""
    if not _OUR_NAMES.match(src.name):
        return False
    try:
        return src.parent.resolve() == out.resolve() or (out.exists() and os.path.samefile(src.parent, out))
    except OSError:
        return False


def write_outputs(out: str | os.PathLike[str], result: RefineResult, source: Image,
                  config: dict[str, Any] | None = None, *, force: bool = False) -> Path:
    """Claim ``out`` and write the run there (for library use; the CLI claims before it starts)."""
    return OutputDir.claim(out, force=force).write(result, source, config)
