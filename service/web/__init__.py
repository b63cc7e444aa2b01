"""The page at /: chat with the agents working side by side, the summary streaming below, the
caller's conversations in the sidebar. Static files in the package (no build step, nothing
fetched from elsewhere at run time); the page talks only to the public API.

    app.register_blueprint(web)
"""

from __future__ import annotations

import hashlib
from importlib import resources as package_files

from quart import Blueprint, Response, request

from ..api.access import requires
from ..api.contract.document import documented, raw
from ..errors import NotFound

web = Blueprint("web", __name__)

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "docs.html": "text/html; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "turn.js": "text/javascript; charset=utf-8",
    "versions.js": "text/javascript; charset=utf-8",
    "compare.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "code.js": "text/javascript; charset=utf-8",
    "clipboard.js": "text/javascript; charset=utf-8",
    "evals.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
_STATIC = package_files.files(__package__) / "static"
# highlight.js, vendored as its package ships it (vendor/highlight.js, its licence beside
# it): served as highlight-core.js and highlight-<language>.js.
_HIGHLIGHT = _STATIC / "vendor" / "highlight.js"
_VENDORED = {
    "highlight-core.js": _HIGHLIGHT / "core.min.js",
    **{
        f"highlight-{grammar.name.removesuffix('.min.js')}.js": grammar
        for grammar in (_HIGHLIGHT / "languages").iterdir()
        if grammar.name.endswith(".min.js")
    },
}
# Read once: the page is a handful of small files.
_FILES = {
    **{name: (_STATIC / name).read_bytes() for name in _TYPES},
    **{name: path.read_bytes() for name, path in _VENDORED.items()},
}
_TYPES |= {name: "text/javascript; charset=utf-8" for name in _VENDORED}
_ETAGS = {name: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for name, body in _FILES.items()}
# Nothing the page shows can run: scripts and styles from this origin only, no inline code
# (model output is text in the DOM, never markup), no framing by other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file(name: str) -> Response:
    if name not in _FILES:
        raise NotFound()
    if request.headers.get("If-None-Match") == _ETAGS[name]:
        return Response(b"", status=304, headers={"ETag": _ETAGS[name], **SECURITY_HEADERS})
    headers = {"ETag": _ETAGS[name], "Cache-Control": "no-cache", **SECURITY_HEADERS}
    return Response(_FILES[name], status=200, headers=headers, content_type=_TYPES[name])


_NOT_MODIFIED = {304: raw("text/plain", "Not modified (`If-None-Match` matched the `ETag`)")}


@web.get("/")
@requires("open")
@documented(
    "The web page: chat with the agents working side by side",
    tag="pages",
    replies={200: raw("text/html", "The page", ETag="Its version"), **_NOT_MODIFIED},
)
async def page() -> Response:
    return _file("index.html")


@web.get("/docs")
@requires("open")
@documented(
    "This API, readable: the OpenAPI document as a page",
    tag="pages",
    replies={200: raw("text/html", "The page", ETag="Its version"), **_NOT_MODIFIED},
)
async def docs() -> Response:
    return _file("docs.html")


@web.get("/web/<name>")
@requires("open")
@documented(
    "The pages' scripts and styles",
    tag="pages",
    path={"name": "A file name: app.js, markdown.js, docs.js, style.css"},
    replies={200: raw("text/javascript", "The file", ETag="Its version"), **_NOT_MODIFIED},
    errors=(404,),
)
async def asset(name: str) -> Response:
    return _file(name)
