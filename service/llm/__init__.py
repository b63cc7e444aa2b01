"""Language models: the ChatModel protocol, the OpenAI-compatible client and the mock."""

from .mock import MockChatModel
from .model import (
    ChatMessage,
    ChatModel,
    ChatRequest,
    Completion,
    CompletionStream,
    Endpoint,
    FinishReason,
    Usage,
)
from .openai_model import OpenAIChatModel
from .router import ProviderRouter

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "CompletionStream",
    "Endpoint",
    "FinishReason",
    "MockChatModel",
    "OpenAIChatModel",
    "ProviderRouter",
    "Usage",
]
