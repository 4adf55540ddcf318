"""Real tools (loaded by import path) whose every reply is hostile text: rich markup, emoji codes, brackets."""

from __future__ import annotations

import warnings

import numpy as np

from refine_agent.images import Image
from refine_agent.types import Critique, CritiqueRequest, EditRequest, EditResult, JudgeRequest, Verdict

MARKUP = "[/] [bold]loud[/bold] :smile: [link=x]y"


class InvertEditor:
    """Edits anything: inverts the image. Warns once with markup, as a library might."""

    name = "invert-editor"

    def __init__(self, warn: bool = False) -> None:
        if warn:
            warnings.warn(f"odd setting {MARKUP}", stacklevel=1)

    async def edit(self, req: EditRequest) -> EditResult:
        return EditResult(image=Image(np.ascontiguousarray(255 - req.image.array)), info={"note": MARKUP})


class MarkupJudge:
    """Fails the first edit it sees, passes every later one; its reasoning is markup."""

    name = "markup-judge"

    def __init__(self, fail_first: bool = True, refuse: bool = False) -> None:
        self.fail_first = fail_first
        self.refuse = refuse
        self.calls = 0

    async def judge(self, req: JudgeRequest) -> Verdict:
        self.calls += 1
        if self.refuse:
            return Verdict.failed("refused", f"I will not judge {MARKUP}")
        if self.fail_first and self.calls == 1:
            return Verdict(overall=3.0, passed=False, reasoning=MARKUP)
        return Verdict(overall=9.0, passed=True, reasoning=MARKUP)


class MarkupCritic:
    """Asks for the same edit again, with markup in its analysis and its instruction."""

    name = "markup-critic"

    async def critique(self, req: CritiqueRequest) -> Critique:
        return Critique(satisfied=False, analysis=MARKUP, instruction=f"{req.instruction} again {MARKUP}")
