"""Web page details: errors name the checkbox, fps is rounded, no stale progress on failure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "fomm" / "app" / "static"
CHECKBOX = "crop the face and paste it back"


def test_no_face_error_names_the_checkbox() -> None:
    pytest.importorskip("fastapi", reason="fomm serve needs the web extras")
    from fomm.app.api import public_message

    message = public_message("no face found in the source image; use --no-crop to animate the "
                             "whole image", {})
    assert "crop=false" in message and f'untick "{CHECKBOX}"' in message
    assert CHECKBOX in (STATIC / "index.html").read_text()  # the label it names


def _function(name: str) -> str:
    source = (STATIC / "app.js").read_text()
    match = re.search(rf"function {name}\(.*?\n}}\n", source, re.S)
    assert match, f"{name} not found in app.js"
    return match.group(0)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_fps_is_rounded_for_display() -> None:
    script = _function("formatFps") + "console.log([30000 / 1001, 25, 12.5].map(formatFps));"
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[ '29.97', '25', '12.5' ]", out.stderr


def test_failed_job_hides_the_progress_line() -> None:
    poll = _function("poll")
    failure = poll[poll.index("} else {"):]  # failed or cancelled
    assert failure.index('show($("progress-box"), false)') < failure.index("showError")
