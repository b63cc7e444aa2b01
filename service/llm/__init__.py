"""Language models: the ChatModel protocol, the OpenAI-compatible client and the mock."""

from .mock import MockChatModel
from .model import ChatMessage, ChatModel, ChatRequest, Completion, CompletionStream, Usage
from .openai_model import OpenAIChatModel

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "CompletionStream",
    "MockChatModel",
    "OpenAIChatModel",
    "Usage",
]
