"""Tools for tests that run the CLI in a subprocess: real tools, loaded by import path."""

from __future__ import annotations

import os
from typing import ClassVar

from refine_agent.tools.editors.sim import SimEditor

from refine_agent.types import EditRequest, EditResult, JudgeRequest, Verdict


class LoggingSimEditor(SimEditor):
    """The sim editor, appending 'start KEY' and 'end KEY' lines to $REFINE_AGENT_TEST_LOG for every call."""

    name: ClassVar[str] = "logging-sim"

    async def edit(self, req: EditRequest) -> EditResult:
        key = f"{req.seed}:{req.image.sha256[:16]}:{req.instruction}"
        self._log(f"start {key}")
        out = await super().edit(req)
        out.info["request"] = key  # stored with the result, so tests can tell which calls were committed
        self._log(f"end {key}")
        return out

    @staticmethod
    def _log(line: str) -> None:
        path = os.environ.get("REFINE_AGENT_TEST_LOG")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()


class BrightnessJudge:
    """Scores an edit by the mean brightness of the edited image (0-10); says parse_error when asked to.

    For judge-eval tests: a judge whose agreement with a brightness-based MOS is known.
    """

    name = "brightness"

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.calls = 0

    async def judge(self, req: JudgeRequest) -> Verdict:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            return Verdict.failed("parse_error", "could not read the reply", raw="???")
        score = float(req.edited.array.mean()) / 25.5
        return Verdict(overall=round(score, 4), passed=score >= 5)


class LenientJudge:
    """Passes everything with overall 9: the judge judge-check must flag. ``black`` says what it does with an
    all-black edit instead: ``pass`` (the default), ``raise`` (an exception) or ``fail`` (a failed Verdict)."""

    name = "lenient"

    def __init__(self, black: str = "pass") -> None:
        if black not in ("pass", "raise", "fail"):
            raise TypeError(f"black must be pass, raise or fail, not {black!r}")
        self.black = black

    async def judge(self, req: JudgeRequest) -> Verdict:
        if self.black != "pass" and not req.edited.array.any():
            if self.black == "raise":
                raise RuntimeError("cannot judge an all-black image")
            return Verdict.failed("refused", "the image is all black", judge=self.name)
        return Verdict(overall=9.0, passed=True, judge=self.name)
