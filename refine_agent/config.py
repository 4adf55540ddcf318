"""One pydantic config for a whole run, loadable from YAML or TOML; CLI flags and env vars override it.

Precedence, highest first: command-line flags, ``REFINE_AGENT_*`` environment variables, the ``--config``
file, then the defaults below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .budget import Budget
from .errors import ConfigError, parse_failure, validation_message
from .images import DEFAULT_MAX_PIXELS
from .loop import LoopPolicy
from .placement import RayConfig
from .runtime import RuntimeConfig
from .textio import read_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ToolSpec(BaseModel):
    """A tool by spec (``sim``, ``openai:gpt-4o``, ``my_pkg.mod:MyJudge``) with its options."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"spec": value} if isinstance(value, str) else value


SEED_MAX = 2**63 - 1  # every seed, from any flag or file, is an integer in [0, SEED_MAX]


class RunConfig(BaseModel):
    """Everything that decides what a run does. Written in full to every output directory."""

    model_config = ConfigDict(extra="forbid")

    editor: ToolSpec = Field(default_factory=lambda: ToolSpec(spec="sim"))
    refine_editor: ToolSpec | None = None
    judge: ToolSpec = Field(default_factory=lambda: ToolSpec(spec="verify"))
    critic: ToolSpec = Field(default_factory=lambda: ToolSpec(spec="rule"))
    controller: ToolSpec | None = Field(default=None, description="an LLM that drives the rounds instead of the "
                                        "fixed policy (agentic mode); the critic is then unused")
    budget: Budget = Field(default_factory=Budget)
    policy: LoopPolicy = Field(default_factory=LoopPolicy)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    seed: int = Field(default=0, ge=0, le=SEED_MAX, description="run seed; every random choice derives from it")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1, description="largest image accepted")
    ray: RayConfig | None = Field(default=None, description="run tools given workers=N as Ray actors on this "
                                  "cluster (--ray); None: everything runs in this process")

    @model_validator(mode="after")
    def _candidates_need_the_policy_loop(self) -> RunConfig:
        if self.controller is not None and self.policy.candidates > 1:
            raise ValueError("policy.candidates (--candidates) is for the fixed-policy loop; a controller decides "
                             "its own edits. Drop --candidates or --controller")
        return self


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (.yaml/.yml), TOML (.toml) or JSON file into a dict, with one-line errors.

    The text is UTF-8; a byte-order mark (as Windows editors write) is dropped, and also picks UTF-16/32.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        text = read_text(p)
    except UnicodeDecodeError as exc:
        # Replacing bad bytes would change values (a key, a path) without a word; say where instead.
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror or exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {p}: unknown format '{suffix}'; use .yaml, .yml, .toml or .json")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML{line}: {problem}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a number of thousands of digits, nesting too deep
        raise ConfigError(f"config file {p} cannot be read: {parse_failure(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def validate_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a merged settings dict into a RunConfig, with one-line errors naming the field."""
    try:
        return RunConfig.model_validate(_normalise_tools(data))
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where)) from None


def _normalise_tools(data: dict[str, Any]) -> dict[str, Any]:
    """Let a string stand for a tool spec, so that merging a flag into a file's options keeps them."""
    out = dict(data)
    for key in ("editor", "refine_editor", "judge", "critic", "controller"):
        if isinstance(out.get(key), str):
            out[key] = {"spec": out[key]}
    return out


SECRET_KEY = ("key", "token", "secret", "password", "authorization")


def redacted(value: Any) -> Any:
    """A copy with every secret-looking field (api_key, token, ...) masked: for run.json, logs and outputs."""
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and any(w in k.lower() for w in SECRET_KEY) and v else redacted(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def public_dump(config: RunConfig) -> dict[str, Any]:
    """The config as JSON, with secrets masked: what output directories and run.json record."""
    return redacted(config.model_dump(mode="json"))


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["skill=0.8", "name=x"]`` -> ``{"skill": 0.8, "name": "x"}``. Values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad {what} '{item}': use key=value, e.g. skill=0.8")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, RecursionError):  # not a YAML scalar: the text as given
            value = raw
        out[key] = value
    return out
