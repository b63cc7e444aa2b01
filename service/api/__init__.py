"""HTTP adapters only: request parsing and validation, the error envelope, SSE framing."""

from .envelope import error_response, http_exception_response
from .routes import routes
from .sse import SseEncoder

__all__ = ["SseEncoder", "error_response", "http_exception_response", "routes"]
