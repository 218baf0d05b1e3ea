"""The web page against a server with --token, in headless Chromium: asked once, sent everywhere."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")

import test_app_browser as base  # noqa: E402
from tiny import tiny_models  # noqa: E402

from fomm.app.api import Settings, create_app  # noqa: E402
from fomm.app.serve import serve_in_thread  # noqa: E402
from fomm.inference.animator import Animator  # noqa: E402

pytestmark = pytest.mark.browser
browser, media = base.browser, base.media  # the fixtures of test_app_browser
TOKEN = "page-token-for-tests_0123456789"


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory):
    animator = Animator(*tiny_models(image_size=64), device="cpu")
    settings = Settings(data_dir=str(tmp_path_factory.mktemp("serve")), token=TOKEN)
    with serve_in_thread(create_app(settings, animator=animator)) as url:
        yield url


def test_the_page_asks_for_the_token_once_and_plays_the_result(browser, locked_server, media):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    prompts: list[str] = []

    def answer(dialog) -> None:
        prompts.append(dialog.message)
        dialog.accept(TOKEN)

    page.on("dialog", answer)
    page.goto(locked_server)
    page.wait_for_function("() => sessionStorage.getItem('fomm-token') !== null", timeout=30_000)
    page.set_input_files("#source", str(media["source"]))
    page.set_input_files("#driving", str(media["clip"]))
    base.open_options(page)
    page.uncheck("#crop")  # the tiny test model knows no faces
    page.click("#animate")
    page.wait_for_selector("#result", state="visible", timeout=120_000)
    page.wait_for_function("() => { const v = document.getElementById('result-video');"
                           " return v.readyState >= 2 && v.duration > 0; }", timeout=30_000)
    assert page.evaluate("document.getElementById('result-video').src").startswith("blob:")
    assert page.get_attribute("#download", "href").startswith("blob:")
    assert len(prompts) == 1 and "token" in prompts[0]
    page.close()
