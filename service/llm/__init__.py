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
from .pool import RequestCalls, calls_of_no_request, calls_of_this_request
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
    "RequestCalls",
    "Usage",
    "calls_of_no_request",
    "calls_of_this_request",
]
