"""Route on the path as the client sent it: an encoded slash (`%2F`) is part of its segment.

Hypercorn decodes every %-escape before routing, so `GET /admin%2fensemble` reached
`/admin/ensemble`, past any proxy rule written for `/admin/`. This ASGI middleware decodes
the raw path again, leaving each `%2F` as the three characters it was; no route has them,
so such a path is a 404.

    app.asgi_app = KeepEncodedSlashes(app.asgi_app)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

_ENCODED_SLASH = re.compile(rb"%2f", re.IGNORECASE)


class KeepEncodedSlashes:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw_path = scope.get("raw_path")
        if scope["type"] == "http" and raw_path and _ENCODED_SLASH.search(raw_path):
            kept = _ENCODED_SLASH.sub(b"%252F", raw_path)
            scope = {**scope, "path": unquote(kept.decode("ascii"))}
        await self.app(scope, receive, send)
