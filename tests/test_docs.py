"""The documentation: the site builds strictly (no broken links, no missing references, nothing
fetched from the network by its pages) and the README stays short, with links that resolve."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 150
# [text](target) and ![alt](target), with an optional "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REMOTE_ASSET = re.compile(r"<(?:link|script|img)\b[^>]*\b(?:href|src)=\"(?:https?:)?//", re.I)


def relative_links(markdown: str) -> list[str]:
    """The link targets of a Markdown text that point into the repository (no URL, no anchor
    alone), without their ``#anchor``; fenced code blocks are skipped."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_relative_links_finds_paths_and_skips_urls_and_code() -> None:
    text = ("![pic](docs/a.jpg) [doc](docs/b.md#part) [web](https://example.org/x) "
            "[top](#speed) [mail](mailto:a@b.c)\n```\n[code](not/a/link.md)\n```\n")
    assert relative_links(text) == ["docs/a.jpg", "docs/b.md"]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_relative_links_exist() -> None:
    targets = relative_links(README.read_text(encoding="utf-8"))
    assert targets, "the README links to no file of the repository"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert 'pip install "torch==2.13.0" -e . && fomm demo' in text
    assert "bash scripts/test.sh" in text


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the dev extra (mkdocs) is not installed")
    pytest.importorskip("material", reason="the dev extra (mkdocs-material) is not installed")
    pytest.importorskip("mkdocstrings", reason="the dev extra (mkdocstrings) is not installed")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # any folder
    assert run.returncode == 0, run.stdout + run.stderr
    pages = list(site.rglob("*.html"))
    assert (site / "index.html").is_file() and (site / "api" / "index.html").is_file()
    # the API page is rendered from the docstrings
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "prepare_source" in api and "AnimateOptions" in api
    # no page loads a font, a script or a picture from elsewhere
    remote = [str(p.relative_to(site)) for p in pages
              if REMOTE_ASSET.search(p.read_text(encoding="utf-8"))]
    assert not remote, f"pages that load remote assets: {remote}"
