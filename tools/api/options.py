"""Options every API tool takes, and where its endpoint and key come from.

Keys are never recorded: they come from the SDK's usual environment variables (or ``api_key_env``), or an
``api_key`` option that is kept as a secret and masked in every dump. Several base URLs for one tool are
load-balanced, for users who run several vLLM replicas.
"""

from __future__ import annotations

import itertools
import os
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

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

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [u.strip().rstrip("/") for u in v.split(",") if u.strip()]
        return v


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
