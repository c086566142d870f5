"""The web page and /docs are served by the API from its own files: every asset they name is local and loads,
so both work offline (no CDN). The page's behaviour in a browser is tests/e2e/test_web_page.py.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

from api.routes.web import WEB_DIR

# src="..." / href="..." in HTML, and the module paths of JavaScript `import ... from "..."`.
HTML_REFS = re.compile(r"""(?:src|href)=["']([^"'#]+)["']""")
JS_IMPORTS = re.compile(r"""\bfrom\s+["']([^"']+)["']""")


def local_refs(base: str, html: str) -> list[str]:
    refs = HTML_REFS.findall(html)
    remote = [r for r in refs if re.match(r"^(https?:)?//", r)]
    assert not remote, f"{base} loads remote assets {remote}: blank offline"
    return [urljoin(base, r) for r in refs]


@pytest.mark.parametrize("path", ["/docs", "/"])
def test_page_and_docs_load_only_local_assets(api, path):
    with httpx.Client(base_url=api.url) as client:
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assets = local_refs(f"{api.url}{path}", page.text)
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_the_pages_scripts_import_only_files_that_exist(api):
    # ES modules without a build step: a wrong relative import is a blank page, with no server error.
    imports = [
        (script.name, target)
        for script in sorted(WEB_DIR.glob("*.js"))
        for target in JS_IMPORTS.findall(script.read_text())
    ]
    # The page is app.js importing its modules: a pattern or folder that finds none would check nothing.
    assert {"app.js", "training.js"} <= {name for name, _ in imports}, imports
    with httpx.Client(base_url=api.url) as client:
        for name, target in imports:
            assert target.startswith("./"), f"{name} imports {target!r}: only the page's own files"
            assert client.get(f"/web/{target[2:]}").status_code == 200, f"{name}: {target}"


def test_the_page_may_load_nothing_from_another_origin(api):
    policy = httpx.get(f"{api.url}/").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy


def test_openapi_schema_lists_the_api_and_not_the_page(api):
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    assert "/v1/stylize" in paths and "/" not in paths and "/docs" not in paths


def test_the_pages_terminal_statuses_are_the_apis(api):
    # A status the page does not know as final would leave its job card waiting forever (partial, expired).
    schema = httpx.get(f"{api.url}/openapi.json").json()
    statuses = set(schema["components"]["schemas"]["JobStatus"]["enum"]) - {"queued", "running"}
    script = (WEB_DIR / "api.js").read_text()
    listed = re.search(r"const TERMINAL = new Set\(\[([^\]]*)\]\)", script)
    assert listed is not None, "api.js no longer lists TERMINAL"
    assert set(re.findall(r'"([a-z]+)"', listed.group(1))) == statuses
