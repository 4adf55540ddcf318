"""Where tools run: in this process, or as Ray actors on a cluster (``--ray``, ``ray:`` in a config file).

Only the settings live here (the core never imports ray): ``RayConfig`` for the cluster, ``Placement`` for one
tool's actors. The placement options (``workers``, ``num_gpus``, ``num_cpus``, ``resources``,
``max_restarts``) are taken out of a tool's options before the tool is built, so every tool accepts them
without knowing about Ray, and they never reach a cache key.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, validation_message

PLACEMENT_OPTIONS = ("workers", "num_gpus", "num_cpus", "resources", "max_restarts")
_ADDRESS = re.compile(r"^(auto|local|ray://[^\s/:]+:\d+|[^\s/:]+:\d+)$")


class RayConfig(BaseModel):
    """The Ray cluster the run's actors live on, and how they are restarted."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="local (a cluster started here and stopped at the end), auto (the running "
                         "cluster), ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS)")
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local cluster (default: all)")
    num_gpus: int | None = Field(default=None, ge=0, description="GPUs of a local cluster (default: all)")
    max_restarts: int = Field(default=3, ge=0, description="times Ray restarts a dead actor (per-tool override: "
                              "max_restarts=N)")
    start_timeout_s: float = Field(default=900.0, gt=0, description="for every actor to be placed and load its model")
    revive_timeout_s: float = Field(default=120.0, gt=0, description="how long a call waits for a restarting actor "
                                    "when none of the tool's actors is alive")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value

    @field_validator("address")
    @classmethod
    def _known_form(cls, value: str) -> str:
        value = value.strip()
        if not _ADDRESS.match(value):
            raise ValueError("use local, auto, ray://HOST:PORT or HOST:PORT")
        return value


class Placement(BaseModel):
    """One tool's actors: how many, and what each reserves on the cluster."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(ge=1, le=4096, description="actors, each holding its own copy of the tool")
    num_gpus: float | None = Field(default=None, ge=0, description="GPUs each actor reserves")
    num_cpus: float | None = Field(default=None, ge=0, description="CPUs each actor reserves")
    resources: dict[str, float] = Field(default_factory=dict, description="custom resources each actor reserves")
    max_restarts: int | None = Field(default=None, ge=0, description="restarts of a dead actor (default: the "
                                     "ray config's)")

    def demand(self) -> dict[str, float]:
        """What one actor asks the scheduler for (Ray's own default CPU demand left out)."""
        out = {k: float(v) for k, v in self.resources.items()}
        if self.num_gpus:
            out["GPU"] = float(self.num_gpus)
        if self.num_cpus:
            out["CPU"] = float(self.num_cpus)
        return out


def split_placement(kind: str, options: dict[str, Any], ray: RayConfig | None) -> tuple[Placement | None,
                                                                                          dict[str, Any]]:
    """A tool's options without the placement options, and its Placement (None: it runs in this process)."""
    given = {k: options[k] for k in PLACEMENT_OPTIONS if k in options}
    rest = {k: v for k, v in options.items() if k not in PLACEMENT_OPTIONS}
    if not given:
        return None, rest
    flags = " ".join(f"{k}={v}" for k, v in given.items())
    if "workers" not in given:
        raise ConfigError(f"{kind} option {flags}: placement options need workers=N (the number of Ray actors)")
    if kind == "controller":
        raise ConfigError("the controller runs in the driver: workers=N is for editors, judges and critics")
    if ray is None:
        raise ConfigError(f"{kind} option {flags} runs the {kind} as Ray actors: give --ray ADDRESS (local, auto "
                          "or ray://HOST:PORT) or 'ray:' in the config file")
    try:
        return Placement.model_validate(given), rest
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, f"{kind} placement option")) from None
