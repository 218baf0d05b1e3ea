"""``fomm serve``'s on-device page at ``/device/``: the export-web site with the isolation headers,
under the server's guard (its content security policy, its token), loading in Chromium."""

from __future__ import annotations

import pytest
from test_app_browser import FLAGS, chromium_path
from test_web_site import built_site
from tiny import tiny_models

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.device import SITE_ENV  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402


@pytest.fixture(scope="module")
def site():
    chromium_path()
    pytest.importorskip("playwright.sync_api", reason="no playwright: scripts/install_browser.sh")
    return built_site()


@pytest.fixture(scope="module")
def app(site, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SITE_ENV, str(site))
        yield create_app(Settings(data_dir=str(tmp_path_factory.mktemp("serve")),
                                  token="a-token-of-sixteen-chars"),
                         animator=Animator(*tiny_models(image_size=64), device="cpu"))


def test_device_files_carry_the_isolation_headers(app):
    client = TestClient(app, base_url="http://localhost")  # a Host the server answers to
    page = client.get("/device/")  # no token needed: static files, animated in the browser
    assert page.status_code == 200 and "on this device" in page.text
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "'wasm-unsafe-eval'" in page.headers["content-security-policy"]
    manifest = client.get("/device/site.json")
    assert manifest.json()["model"]["size"] == 256
    wasm = client.get("/device/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    assert client.get("/device", follow_redirects=False).headers["location"] == "/device/"
    for outside in ("/device/../pyproject.toml", "/device/%2e%2e/%2e%2e/etc/passwd",
                    "/device/..%2f..%2fpyproject.toml"):
        assert client.get(outside).status_code in (401, 404), outside
    assert client.get("/device/nothing.js").status_code == 404
    assert client.get("/v1/animations/x").status_code == 401  # the API still needs the token


@pytest.mark.browser
def test_the_served_page_runs_isolated(app):
    from fomm.app.serve import serve_in_thread

    sync_api = pytest.importorskip("playwright.sync_api")
    with serve_in_thread(app) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=FLAGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{url}/device/")
        page.wait_for_function("() => document.body.dataset.ready === '1'", timeout=180_000)
        assert page.evaluate("self.crossOriginIsolated") is True
        assert page.inner_text("#stat-backend").startswith("WASM SIMD")
        assert "isolation" not in page.inner_text("#stat-backend")
        assert page.is_visible("#server-live")  # the link to the server-side live page
        browser.close()
    assert errors == []
