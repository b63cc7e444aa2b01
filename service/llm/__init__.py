"""Language models: the ChatModel protocol and the mock, here; the OpenAI-compatible client
(`openai_model.OpenAIChatModel`, behind `router.ProviderRouter`) is imported from its own
module, by who uses it: the openai SDK takes a third of a start to load, and a service on
the mock (or a command such as `keys`) never needs it.
"""

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
from .request_calls import RequestCalls, calls_of_no_request, calls_of_this_request

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "CompletionStream",
    "Endpoint",
    "FinishReason",
    "MockChatModel",
    "RequestCalls",
    "Usage",
    "calls_of_no_request",
    "calls_of_this_request",
]
