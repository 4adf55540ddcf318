"""Requests-per-minute and tokens-per-minute limits per endpoint, shared by every tool that uses it.

Two token buckets refilled continuously. Token counts are estimated before a request and corrected with
the usage the server reports, so a burst of large prompts slows down instead of hitting 429s.
"""

from __future__ import annotations

import asyncio
import time

_limiters: dict[tuple[str, int | None, int | None], RateLimiter] = {}


class RateLimiter:
    def __init__(self, rpm: int | None, tpm: int | None, clock: object = time.monotonic) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._clock = clock
        self._requests = float(rpm or 0)
        self._tokens = float(tpm or 0)
        self._stamp = clock()  # type: ignore[operator]

    def _refill(self) -> None:
        now = self._clock()  # type: ignore[operator]
        dt, self._stamp = now - self._stamp, now
        if self.rpm:
            self._requests = min(float(self.rpm), self._requests + dt * self.rpm / 60.0)
        if self.tpm:
            self._tokens = min(float(self.tpm), self._tokens + dt * self.tpm / 60.0)

    def _wait_needed(self, tokens: int) -> float:
        self._refill()
        waits = [0.0]
        if self.rpm and self._requests < 1:
            waits.append((1 - self._requests) * 60.0 / self.rpm)
        if self.tpm:
            need = min(float(tokens), float(self.tpm))  # a request bigger than the budget waits for a full bucket
            if self._tokens < need:
                waits.append((need - self._tokens) * 60.0 / self.tpm)
        return max(waits)

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about ``tokens`` tokens fits, then take it."""
        while (wait := self._wait_needed(tokens)) > 0:
            await asyncio.sleep(wait)
        if self.rpm:
            self._requests -= 1
        if self.tpm:
            self._tokens -= tokens

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the server reports what a request really used."""
        if self.tpm:
            self._tokens -= actual - estimated


def limiter_for(base_url: str, rpm: int | None, tpm: int | None) -> RateLimiter | None:
    if not rpm and not tpm:
        return None
    key = (base_url, rpm, tpm)
    if key not in _limiters:
        _limiters[key] = RateLimiter(rpm, tpm)
    return _limiters[key]


def estimate_tokens(texts: list[str], n_images: int, max_output: int) -> int:
    """A rough count for rate limiting: ~4 characters per token, ~800 tokens per image, plus the reply."""
    return sum(len(t) for t in texts) // 4 + 800 * n_images + max_output
