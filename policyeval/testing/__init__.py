"""Helpers for testing against real sockets: a scriptable OpenAI-compatible server."""

from .openai_server import FakeOpenAIServer, Reply, chat_completion_body

__all__ = ["FakeOpenAIServer", "Reply", "chat_completion_body"]
