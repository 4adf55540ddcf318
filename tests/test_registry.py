import sys
import types
from importlib.metadata import EntryPoint

import pytest

from refine_agent import registry as registry_mod
from refine_agent.errors import ConfigError, MissingExtraError, UnknownToolError
from refine_agent.registry import Registry, ToolEntry


def test_builtins_resolve_and_take_options() -> None:
    reg = Registry()
    sim = reg.create("editor", "sim", {"skill": 0.9})
    assert sim.name == "sim" and sim.options.skill == 0.9
    assert sim.identity() == {"name": "sim", "params": {"skill": 0.9}}  # latency etc. stay out of cache keys
    assert reg.create("judge", "verify").name == "verify"
    assert {"rule", "repeat"} <= set(reg.names("critic"))


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(UnknownToolError, match=r"unknown judge 'gpt4'; known judges: verify"):
        Registry().create("judge", "gpt4")


def test_bad_options_give_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"editor 'sim' option invalid: skil: unknown field"):
        Registry().create("editor", "sim", {"skil": 1})
    with pytest.raises(ConfigError, match=r"skill: Input should be less than or equal to 1"):
        Registry().create("editor", "sim", {"skill": 3})
    with pytest.raises(ConfigError, match="takes no model"):
        Registry().create("editor", "sim:big")


def test_import_path_tools() -> None:
    judge = Registry().create("judge", "refine_agent.testing:FunctionJudge", {"name": "mine"})
    assert judge.name == "mine"
    with pytest.raises(ConfigError, match="has no attribute"):
        Registry().create("judge", "refine_agent.testing:Nope")
    with pytest.raises(ConfigError, match="cannot import"):
        Registry().create("judge", "no_such_pkg.mod:Judge")
    with pytest.raises(ConfigError, match="cannot be built"):
        Registry().create("judge", "refine_agent.testing:FunctionJudge", {"colour": 1})


def test_objects_that_are_not_tools_are_refused() -> None:
    with pytest.raises(ConfigError, match="judge"):
        Registry().create("judge", "refine_agent.testing:FunctionEditor")


def test_name_model_specs_pass_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("fake_provider")

    class Judge:
        def __init__(self, model: str) -> None:
            self.name = f"fake:{model}"

        @classmethod
        def from_spec(cls, model: str | None, options: dict) -> "Judge":
            return cls(model or "default")

        async def judge(self, req):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    mod.Judge = Judge  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_provider", mod)
    reg = Registry()
    reg.register(ToolEntry("judge", "fake", "fake_provider:Judge"))
    assert reg.create("judge", "fake:model-x").name == "fake:model-x"
    assert reg.create("judge", "fake").name == "fake:default"


def test_missing_extra_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry()
    reg.register(ToolEntry("editor", "diffusers", "refine_agent.tools.editors.not_here_yet:Editor", extra="local"))

    def fake_import(name: str):  # type: ignore[no-untyped-def]
        err = ModuleNotFoundError("No module named 'torch'")
        err.name = "torch"
        raise err

    monkeypatch.setattr(registry_mod.importlib, "import_module", fake_import)
    with pytest.raises(MissingExtraError, match=r"pip install 'refine-agent\[local\]'"):
        reg.create("editor", "diffusers")


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="plugged", value="refine_agent.testing:FunctionCritic", group="refine_agent.critics")

    def fake_entry_points(group: str):  # type: ignore[no-untyped-def]
        return [ep] if group == "refine_agent.critics" else []

    monkeypatch.setattr(registry_mod, "entry_points", fake_entry_points)
    reg = Registry()
    assert "plugged" in reg.names("critic")
    assert reg.create("critic", "plugged").name == "function-critic"
