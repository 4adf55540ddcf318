"""Typed errors. Each carries one line a user can act on; the CLI prints it without a traceback."""

from __future__ import annotations


class RefineAgentError(Exception):
    """Base class. ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1


class InputError(RefineAgentError):
    """Bad user input: a file, an instruction, an option value."""

    exit_code = 2


class ConfigError(InputError):
    """A malformed config file, flag or tool option."""


class UnknownToolError(ConfigError):
    """A tool spec that names no known tool."""


class MissingExtraError(RefineAgentError):
    """A backend needs an optional dependency that is not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(f"{what} needs the '{package}' package: pip install 'refine-agent[{extra}]'")
        self.package = package
        self.extra = extra


class ToolError(RefineAgentError):
    """Raised by a tool. ``transient`` tells the runtime whether retrying may help."""

    transient = False


class TransientToolError(ToolError):
    """A failure that may succeed on retry: rate limit, 5xx, timeout, a dropped connection."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentToolError(ToolError):
    """A failure that retrying cannot fix: bad request, auth, refusal, unsupported input."""


class ToolUnavailableError(PermanentToolError):
    """The tool is gone for this run (e.g. every one of its Ray actors died): not a verdict on the request, so the
    sample is recorded as an error that ``--resume`` runs again."""


class RefusedError(PermanentToolError):
    """The tool refused this request (e.g. on content-policy grounds); another request may be served."""


class UnsupportedInstructionError(PermanentToolError, InputError):
    """An instruction outside what a tool understands (e.g. outside the classic editor's grammar)."""

    exit_code = 2


class ToolCallFailed(RefineAgentError):
    """A tool call that failed for good, after the runtime's retries (if any)."""

    def __init__(self, kind: str, tool: str, cause: BaseException, attempts: int, record: object = None) -> None:
        self.record = record  # the runtime's CallRecord of the failed call
        self.kind = kind
        self.tool = tool
        self.cause = cause
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{kind} '{tool}' failed{tries}: {describe(cause)}")

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return getattr(self.cause, "exit_code", 1)


def describe(exc: BaseException) -> str:
    """A one-line description of an exception for records and messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RefineAgentError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_failure(exc: BaseException) -> str:
    """Why a JSON/YAML/TOML text could not be read, in the user's terms (Python's own words name its internals)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, ValueError) and "digits" in str(exc):
        return "a number with more than 4300 digits"
    return describe(exc)


def validation_message(exc: object, where: str) -> str:
    """Squeeze a pydantic ValidationError into one line: which field, what is wrong."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return f"{where}: {exc}"
    parts = []
    for err in errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "(value)"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        given = err.get("input")
        if isinstance(given, (str, int, float)) and not isinstance(given, bool) and len(str(given)) <= 80:
            msg += f" (got {given!r})"  # the value as given, so the user sees which one is wrong
        parts.append(f"{loc}: {msg}")
    return f"{where} invalid: " + "; ".join(parts)
