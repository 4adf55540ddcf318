"""Cost from token usage and a price table (USD per 1M tokens). Defaults for common models, as published
when this table was written; prices change, so override them with the ``price_in`` / ``price_out`` tool
options. A model with no known price costs nothing here, and the tool says so once."""

from __future__ import annotations

import warnings

from refine_agent.types import Usage

# model id prefix -> (input, output) USD per 1M tokens. The longest matching prefix wins, so dated ids
# ("gpt-4o-2024-08-06", "claude-sonnet-4-20250514") find their family.
CHAT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
}
# Image models bill text input, image input and image output differently: (text in, image in, image out).
IMAGE_PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-image-1": (5.00, 10.00, 40.00),
    "gpt-image-1-mini": (2.00, 2.50, 8.00),
}
_warned: set[str] = set()


def _lookup(table: dict[str, tuple[float, ...]], model: str) -> tuple[float, ...] | None:
    hits = [k for k in table if model == k or model.startswith(k + "-") or model.startswith(k + ":")]
    return table[max(hits, key=len)] if hits else None


def _unknown(model: str) -> None:
    if model not in _warned:
        _warned.add(model)
        warnings.warn(f"no price known for model '{model}': its cost is counted as 0 (set price_in/price_out)",
                      stacklevel=3)


def chat_cost(model: str, input_tokens: int, output_tokens: int, price_in: float | None = None,
              price_out: float | None = None, requested: str | None = None) -> float:
    """Cost of one chat call. ``model`` is the id the server reported; the requested name is the fallback
    (a server may report a dated id, or a local alias)."""
    known = _lookup(CHAT_PRICES, model) or (_lookup(CHAT_PRICES, requested) if requested else None)
    pin = price_in if price_in is not None else (known[0] if known else None)
    pout = price_out if price_out is not None else (known[1] if known else None)
    if pin is None or pout is None:
        _unknown(model)
        return 0.0
    return (input_tokens * pin + output_tokens * pout) / 1e6


def image_cost(model: str, text_in: int, image_in: int, image_out: int, price_in: float | None = None,
               price_out: float | None = None) -> float:
    known = _lookup(IMAGE_PRICES, model)
    if known is None and (price_in is None or price_out is None):
        _unknown(model)
        return 0.0
    t_in, i_in, i_out = known if known is not None else (price_in, price_in, price_out)  # type: ignore[misc]
    if price_in is not None:
        t_in = i_in = price_in
    if price_out is not None:
        i_out = price_out
    return (text_in * t_in + image_in * i_in + image_out * i_out) / 1e6


def usage(input_tokens: int, output_tokens: int, cost_usd: float) -> Usage:
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd)
