"""Options every API tool takes, and where its endpoint and key come from.

Keys are never recorded: they come from the SDK's usual environment variables (or ``api_key_env``), or an
``api_key`` option that is kept as a secret and masked in every dump. Several base URLs for one tool are
load-balanced, for users who run several vLLM replicas.
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from refine_agent.errors import ConfigError

PROVIDER_DEFAULTS: dict[str, dict[str, str]] = {
    "openai": {"base_url_env": "OPENAI_BASE_URL", "key_env": "OPENAI_API_KEY", "base_url": "https://api.openai.com/v1"},
    "anthropic": {"base_url_env": "ANTHROPIC_BASE_URL", "key_env": "ANTHROPIC_API_KEY",
                  "base_url": "https://api.anthropic.com"},
}
# Options that change where or how fast a call goes, not what it returns: kept out of cache keys.
TRANSPORT_OPTIONS = frozenset({"base_url", "api_key", "api_key_env", "max_concurrency", "timeout_s", "rpm", "tpm",
                               "price_in", "price_out"})


def _default_word(v: Any) -> Any:
    """'none' (or 'default') on the command line means: send no value, the model's own default applies."""
    return None if isinstance(v, str) and v.strip().lower() in ("none", "null", "default") else v


# Reasoning models (OpenAI's o-series and gpt-5) accept only their default temperature: temperature=none.
Temperature = Annotated[Annotated[float, Field(ge=0, le=2)] | None, BeforeValidator(_default_word)]
TEMPERATURE_HELP = "sampling temperature; none sends none (the model's default, as reasoning models require)"


class APIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: list[str] | None = Field(default=None, description="endpoint(s); several are load-balanced "
                                       "(default: OPENAI_BASE_URL / ANTHROPIC_BASE_URL, then the provider's)")
    api_key: SecretStr | None = Field(default=None, description="prefer the SDK's env var; never recorded")
    api_key_env: str | None = Field(default=None, description="env var holding the key (default: the SDK's)")
    max_concurrency: int = Field(default=8, ge=1, description="requests in flight at once (per tool)")
    timeout_s: float = Field(default=120.0, gt=0, description="HTTP timeout of one request")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute per endpoint")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute per endpoint (estimated)")
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens (overrides the table)")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens (overrides the table)")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra request fields, e.g. for vLLM")

    def __repr__(self) -> str:  # the options given, not every default (a secret stays masked)
        given = ", ".join(f"{k}={getattr(self, k)!r}" for k in type(self).model_fields if k in self.model_fields_set)
        return f"{type(self).__name__}({given})"

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u.strip().rstrip("/") for u in v.split(",") if u.strip()]
        return v


class WithAPITransport(BaseModel):
    """Options of a tool that calls an HTTP chat backend: its transport (endpoint, key, rate limits, prices)
    nested under ``transport``, so the tool's own options stay backend-neutral. The flat spelling of the
    command line and config files (``-J base_url=...``, ``api_key_env``, ``rpm``, ``price_in``, ...) is
    accepted and moved into ``transport``."""

    model_config = ConfigDict(extra="forbid")

    transport: APIOptions = Field(default_factory=APIOptions, description=(
        "endpoint, key, rate limits and prices, given flat (-J base_url=URL[,URL]): base_url, api_key_env, "
        "api_key, max_concurrency (8), timeout_s (120), rpm, tpm, price_in, price_out (USD per 1M tokens), "
        "extra_body"))

    @model_validator(mode="before")
    @classmethod
    def _nest_transport(cls, data: Any) -> Any:
        return nest_transport(data)


def nest_transport(data: Any, model: type[BaseModel] = APIOptions) -> Any:
    """Move the flat transport options (``base_url=...``; ``model``'s fields) of a tool's options into
    ``transport``."""
    if not isinstance(data, dict):
        return data
    flat = {k: data[k] for k in model.model_fields if k in data}
    if not flat:
        return data
    nested: Any = data.get("transport") or {}
    if isinstance(nested, BaseModel):
        nested = {k: getattr(nested, k) for k in nested.model_fields_set}
    if not isinstance(nested, dict):
        return data  # let validation say what is wrong with it
    return {**{k: v for k, v in data.items() if k not in flat}, "transport": {**nested, **flat}}


def semantic_params(options: BaseModel) -> dict[str, Any]:
    """A VLM tool's options as they go into cache keys: everything but the transport, which changes where
    and how fast a call goes, not what it returns; ``extra_body`` (request fields such as vLLM's guided
    decoding) does change replies, so it stays, under its flat name as before. A local backend's options say
    what of them changes replies (``semantic()``: the weights' revision, dtype, image sizes)."""
    params = options.model_dump(mode="json", exclude={"transport"})
    transport = getattr(options, "transport", None)
    if transport is not None and hasattr(transport, "extra_body"):
        params["extra_body"] = transport.model_dump(mode="json")["extra_body"]
    semantic = getattr(transport, "semantic", None)
    if callable(semantic):
        params.update(semantic())
    return params


class Endpoints:
    """The resolved base URLs and key of one tool, with round-robin selection."""

    LOCAL_KEY: ClassVar[str] = "EMPTY"  # what vLLM and most local servers accept

    def __init__(self, provider: str, opts: APIOptions) -> None:
        d = PROVIDER_DEFAULTS[provider]
        env_url = os.environ.get(d["base_url_env"], "").strip()
        urls = opts.base_url or ([u.strip().rstrip("/") for u in env_url.split(",") if u.strip()] or [d["base_url"]])
        self.urls: list[str] = urls
        self.key_env = opts.api_key_env or d["key_env"]
        key = opts.api_key.get_secret_value() if opts.api_key is not None else os.environ.get(self.key_env, "")
        if not key:
            if any(u == d["base_url"] for u in urls):
                raise ConfigError(f"{self.key_env} is not set; export it (or pass the key's env var name with "
                                  f"api_key_env=...) to use {d['base_url']}")
            key = self.LOCAL_KEY  # a local server (vLLM, a test server) usually needs none
        self.key = key
        self._next = itertools.cycle(range(len(urls)))

    def pick(self) -> int:
        return next(self._next)

    def redact(self, text: str) -> str:
        """Remove the key from any text that might be shown or stored."""
        return text.replace(self.key, "***") if self.key and self.key != self.LOCAL_KEY else text
