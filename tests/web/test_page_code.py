"""Code blocks in colour, in a real Chromium against the real server and the fake upstream:
highlight.js (vendored, served from the page's own origin) colours each known language, its
tokens built as DOM nodes (the code's text exactly, no element of the model's), a grammar is
fetched once when first needed, an unknown language stays plain, and the copy button gives
the code as it was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.fake_upstream import Behaviour, FakeUpstream
from tests.integration.harness import running_service
from tests.web.browser import BrowserThread, page_errors, screenshot
from tests.web.test_page import DONE, ask, open_page

PYTHON = 'def greet(name):\n    # say hello\n    return f"hi {name}" + str(42)'
JAVASCRIPT = 'const answer = 42; // "<script>alert(1)</script>"\nconsole.log(`${answer}`);'
HTML = '<b onclick="alert(1)">not bold</b>\n<script>window.__ran = true;</script>'
UNKNOWN = "some words in a language with no grammar here"
ANSWER = (
    f"```python\n{PYTHON}\n```\n\n```js\n{JAVASCRIPT}\n```\n\n"
    f"```html\n{HTML}\n```\n\n```klingon\n{UNKNOWN}\n```\n\n```py\nprint(1)\n```\n"
)

BLOCKS = """(root) => [...root.querySelectorAll(".code")].map(block => {
    const code = block.querySelector("code");
    const spans = [...code.querySelectorAll("*")];
    const keyword = code.querySelector(".hljs-keyword");
    return {
        language: block.querySelector(".code-bar span").textContent,
        text: code.textContent,
        tags: [...new Set(spans.map(e => e.tagName))],
        classes: [...new Set(spans.flatMap(e => [...e.classList]))].sort(),
        keywords: [...code.querySelectorAll(".hljs-keyword")].map(e => e.textContent),
        keyword_colour: keyword ? getComputedStyle(keyword).color : null,
        text_colour: getComputedStyle(code).color,
    };
})"""


async def test_code_is_coloured_as_dom_nodes_from_this_origin_and_copied_as_written(
    browser: BrowserThread, tmp_path: Path
) -> None:
    fake = FakeUpstream({"fake-a": Behaviour(reply=ANSWER), "fake-b": Behaviour(reply=ANSWER)})
    async with running_service(tmp_path, fake) as service:
        page = await open_page(browser, service)

        def run() -> dict[str, Any]:
            requests: list[str] = []
            violations: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security" in m.text else None,
            )
            page.context.grant_permissions(["clipboard-read", "clipboard-write"])
            ask(page, "Show me code")
            page.wait_for_selector(DONE)
            alpha = page.locator('.agent[data-agent="alpha"]')
            alpha.locator("code.hljs").first.wait_for()
            page.wait_for_function(
                "() => document.querySelectorAll('.agent .code code.hljs').length === 8"
            )
            seen: dict[str, Any] = {"blocks": alpha.evaluate(BLOCKS)}
            alpha.locator(".code-bar button").first.click()
            seen["copied"] = page.evaluate("navigator.clipboard.readText()")
            seen["ran"] = page.evaluate("window.__ran === true")
            seen["grammars"] = sorted(
                url.removeprefix(service.url) for url in requests if "/web/highlight-" in url
            )
            seen["elsewhere"] = [url for url in requests if not url.startswith(service.url)]
            seen["violations"] = violations
            seen["shot"] = screenshot(page, "code-highlighted")
            return seen

        seen = await browser.run(run)
        await browser.close_page(page)
    python, javascript, html, unknown, short = seen["blocks"]
    assert short["keywords"] == []  # print(1): the grammar loaded once, coloured all the same
    assert "hljs-number" in short["classes"]
    assert [b["language"] for b in seen["blocks"]] == ["python", "js", "html", "klingon", "py"]
    # The text is the code exactly; only spans were added around it.
    assert [b["text"] for b in seen["blocks"]] == [PYTHON, JAVASCRIPT, HTML, UNKNOWN, "print(1)"]
    for block in (python, javascript, html):
        assert block["tags"] == ["SPAN"], block
    assert python["keywords"] == ["def", "return"]
    assert {"hljs-comment", "hljs-string", "hljs-number", "hljs-title", "function_"} <= set(
        python["classes"]
    )
    assert python["keyword_colour"] != python["text_colour"]
    assert {"hljs-keyword", "hljs-comment"} <= set(javascript["classes"])
    assert "hljs-tag" in html["classes"]
    assert unknown["tags"] == []
    assert seen["ran"] is False
    assert seen["copied"] == PYTHON
    # Each grammar once, when first needed (py and python are one; the core came with the
    # page), all from this origin, no CSP complaint.
    assert seen["grammars"] == [
        "/web/highlight-javascript.js",
        "/web/highlight-python.js",
        "/web/highlight-xml.js",
    ]
    assert seen["elsewhere"] == []
    assert seen["violations"] == []
    assert seen["shot"].stat().st_size > 0
    assert page_errors(page) == []


async def test_the_vendored_highlighter_is_served_with_the_page_headers(tmp_path: Path) -> None:
    async with running_service(tmp_path, None) as service:
        core = await service.client.get("/web/highlight-core.js")
        grammar = await service.client.get("/web/highlight-python.js")
        missing = await service.client.get("/web/highlight-cobol.js")
    for response in (core, grammar):
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Highlight.js v11.12.0" in core.text
    assert core.text.rstrip().endswith("export{te as default};")
    assert grammar.text.rstrip().endswith("export default hljsGrammar;")
    assert missing.status_code == 404
