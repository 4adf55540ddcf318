"""Map SDK exceptions to the runtime's retry classes, with one clear line per failure.

Retried: 429 (honouring Retry-After), 408, 5xx and 529 (overloaded), connection errors and timeouts. Never
retried: 400, 401/403, 404, 422, a 429 that means the quota is used up, and content-policy refusals, which
become ``Refused``.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from refine_agent.errors import PermanentToolError, RefusedError, ToolError, TransientToolError


class Refused(RefusedError):
    """The provider refused the request on content-policy grounds (a judge records status 'refused')."""


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when is not None else None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if "detail" in body:  # FastAPI servers (transformers serve) explain a 4xx here
            return str(body["detail"])
    return str(getattr(exc, "message", "") or exc)


def classify(exc: BaseException, *, provider: str, base_url: str, key_env: str, model: str,
             redact: Any = lambda s: s) -> ToolError:
    """The ToolError that ``exc`` (raised by the openai or anthropic SDK) means for the runtime."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    text = redact(" ".join(_message(exc).split())[:300])
    where = f"{provider} at {base_url}"
    if name in ("APITimeoutError", "DeadlineExceededError", "RequestTimeoutError") or isinstance(exc, TimeoutError):
        return TransientToolError(f"{where} did not answer in time")
    if name == "APIConnectionError" or isinstance(exc, ConnectionError):
        return TransientToolError(f"cannot reach {where}: {text}")
    if isinstance(exc, ValueError) and status is None:  # a 200 whose body is not the JSON it should be
        return TransientToolError(f"{where} sent a reply that is not valid JSON ({name}); retrying")
    code = " ".join(str(getattr(exc, a, "") or "") for a in ("code", "error_code", "type"))
    lowered = f"{code} {text}".lower()
    if status == 429 and ("insufficient_quota" in lowered or "exceeded your current quota" in lowered):
        return PermanentToolError(f"{where}: the account's quota or credit is used up (429): {text}")
    if status == 429:
        response = getattr(exc, "response", None)
        return TransientToolError(f"{where} is rate-limiting (429): {text}",
                                  retry_after=retry_after(getattr(response, "headers", None)))
    if status is not None and (status >= 500 or status == 408):  # 408: the server timed out waiting
        return TransientToolError(f"{where} failed ({status}): {text}")
    if status in (401, 403):
        return PermanentToolError(f"{key_env} is not set or was rejected by {base_url} ({status}): {text}")
    if status == 404:
        return PermanentToolError(f"{where}: model '{model}' or the endpoint was not found (404): {text}")
    if status == 400 and ("content_policy" in lowered or "content policy" in lowered or "safety" in lowered
                          or "moderation" in lowered):
        return Refused(f"{where} refused the request on content-policy grounds: {text}")
    if status is not None:
        return PermanentToolError(f"{where} rejected the request ({status}): {text}")
    return PermanentToolError(f"{where}: {name}: {text}")
