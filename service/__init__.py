"""LLM fan-out service: one request, several agents at once, one streamed summary."""

__version__ = "0.1.0"
