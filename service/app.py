"""create_app(resources) -> QuartTrio: routes, limits and the error envelope, wired once."""

from __future__ import annotations

import logging

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .api.access import identify_caller
from .api.connection import StreamingHTTPConnection
from .api.contract.document import contract, publish_contract
from .api.contract.empty import no_content
from .api.envelope import NO_SNIFF, error_response, http_exception_response
from .api.raw_path import KeepEncodedSlashes
from .api.routes.conversations import conversations
from .api.routes.evals import evals
from .api.routes.keys import key_routes
from .api.routes.openai import openai_routes
from .api.routes.service import routes
from .api.routes.streams import streams
from .api.routes.usage import usage_routes
from .connections.access_log import AccessLog
from .errors import (
    LimiterUnavailable,
    NotAllowed,
    NotAuthenticated,
    RateLimited,
    ServiceError,
    StorageUnavailableError,
)
from .launch import EndUnstartedRuns
from .resources import Resources
from .storage import StorageUnavailable
from .storage.store import NotYours
from .web import web

MAX_BODY_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


class FanoutApp(QuartTrio):
    asgi_http_class = StreamingHTTPConnection

    async def make_default_options_response(self) -> Response:
        """OPTIONS on a route: 204 with the methods it allows, and no body or body type."""
        allowed = (await super().make_default_options_response()).headers["Allow"]
        return no_content({"Allow": ", ".join(sorted(allowed.split(", ")))})


def create_app(resources: Resources) -> QuartTrio:
    app = FanoutApp(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["fanout"] = resources
    app.register_blueprint(routes)
    app.register_blueprint(streams)
    app.register_blueprint(conversations)
    app.register_blueprint(usage_routes)
    app.register_blueprint(evals)
    app.register_blueprint(key_routes)
    app.register_blueprint(openai_routes)
    app.register_blueprint(web)
    app.register_blueprint(contract)

    app.before_request(identify_caller)

    @app.after_request
    async def _no_sniffing(response: Response) -> Response:
        # Answers hold clients' text (errors name what was sent, stored questions): a
        # browser must never guess HTML or script from it.
        response.headers.setdefault(NO_SNIFF[0], NO_SNIFF[1])
        return response

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> Response:
        if isinstance(error, NotAuthenticated):
            return error_response(error, {"WWW-Authenticate": 'Bearer realm="fanout"'})
        if isinstance(error, RateLimited):
            return error_response(error, error.headers)
        if isinstance(error, LimiterUnavailable):
            return error_response(error, {"Retry-After": "1"})
        return error_response(error)

    @app.errorhandler(NotYours)
    async def _not_yours(error: NotYours) -> Response:
        return error_response(NotAllowed("only an admin may name another user"))

    @app.errorhandler(StorageUnavailable)
    async def _storage_unavailable(error: StorageUnavailable) -> Response:
        log.error("the database did not answer", exc_info=error)
        return error_response(StorageUnavailableError())

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        return http_exception_response(error)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(ServiceError())

    app.asgi_app = KeepEncodedSlashes(  # type: ignore[method-assign]
        AccessLog(EndUnstartedRuns(app.asgi_app))
    )
    publish_contract(app)
    return app
