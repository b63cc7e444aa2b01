"""How the page's files are served: no browser needed."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import running_service

STATIC = Path(__file__).resolve().parents[2] / "service" / "web" / "static"
# The one address a file may hold: an SVG's namespace, a name that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


async def test_the_page_and_its_files_are_served_with_a_strict_policy(tmp_path: Path) -> None:
    async with running_service(tmp_path, None, env={"AUTH": "keys"}) as service:
        page = await service.client.get("/")
        # Every file of the page's own (the vendored library is checked by the requests the
        # page makes, tests/web/test_page_code.py).
        own = sorted(path.name for path in STATIC.iterdir() if path.is_file())
        files = {name: await service.client.get(f"/web/{name}") for name in own}
        again = await service.client.get(
            "/web/app.js", headers={"If-None-Match": files["app.js"].headers["ETag"]}
        )
        missing = await service.client.get("/web/secrets.txt")
        traversal = await service.client.get("/web/..%2Fapp.py")
        api = await service.client.get("/api/conversations")
    # Open without a key (it asks for one); the API behind it is not.
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/web/app.js">' in page.text
    assert api.status_code == 401
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert files["app.js"].headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert files["style.css"].headers["Content-Type"] == "text/css; charset=utf-8"
    assert all(response.status_code == 200 for response in files.values())
    assert again.status_code == 304
    assert again.content == b""
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert traversal.status_code == 404
    assert {"app.js", "turn.js", "evals.js", "style.css", "index.html"} <= set(files)
    assert all(files[name].content == (STATIC / name).read_bytes() for name in files)
    # Nothing is fetched from elsewhere at run time.
    for name, body in [("/", page.text)] + [(n, r.text) for n, r in files.items()]:
        body = body.replace(SVG_NAMESPACE, "")
        assert "http://" not in body, name
        assert "https://" not in body, name
