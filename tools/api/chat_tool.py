"""What every tool on a chat backend shares (the VLM judge, the VLM critic, the LLM controller): the backend
it talks to, given or made from the registry, and the capacity, closing and identity that follow from it."""

from __future__ import annotations

from typing import Any

from .backend import ChatBackend, aclose, backend_capacity, make_chat
from .options import semantic_params


class OnChatBackend:
    """A mixin for a ``ToolBase`` whose model answers through ``self.chat``."""

    chat: ChatBackend
    options: Any
    name: str

    def connect(self, chat: ChatBackend | None, provider: str, model: str) -> None:
        """Use ``chat`` when given (e.g. a ``FunctionChat``), else the backend registered for ``provider``."""
        self.chat = chat if chat is not None else make_chat(provider, model, getattr(self.options, "transport", None))

    @property
    def capacity(self) -> int:
        return backend_capacity(self.chat, self.options)

    def limiter_key(self) -> Any:
        """Tools on one loaded local model (judge, critic, evaluation judge) share one limiter."""
        key = getattr(self.chat, "model_key", None)
        return key() if callable(key) else None

    async def load(self) -> None:
        """Load a local backend's model before the first call (a bad folder fails before any sample)."""
        load = getattr(self.chat, "load", None)
        if callable(load):
            await load()

    async def aclose(self) -> None:
        await aclose(self.chat)

    def identity(self) -> dict[str, Any]:
        """The name and the semantic options (never the transport), plus what ``prompt_ids`` adds."""
        return {"name": self.name, "params": {**semantic_params(self.options), **self.prompt_ids()}}

    def prompt_ids(self) -> dict[str, Any]:
        """The prompts in use: a changed prompt makes a different tool (and different cache keys)."""
        return {}
