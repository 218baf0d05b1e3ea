"""A one-minute soak (benchmarks/soak.py) of ``fomm serve`` with a tiny model: jobs, cancels, live
sessions, hostile uploads and live attacks; no job lost, every attack answered as expected.
Slow (about 2 minutes with the server's start and the drain): run with ``pytest -m slow``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="fomm serve needs the web extras: pip install 'fomm[serve]'")
pytest.importorskip("websockets")

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_one_minute_soak_loses_no_job(tmp_path):
    from tiny import tiny_models

    from fomm.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "tiny.safetensors", *tiny_models(image_size=64))
    out = tmp_path / "soak.json"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "1",
                    "--checkpoint", str(tmp_path / "tiny.safetensors"),
                    "--work-dir", str(tmp_path / "work"), "--out", str(out), "--job-every-s", "5",
                    "--cancel-every", "2", "--live-every-s", "1", "--live-frames", "5",
                    "--live-attacks", "photo_bomb_jpeg,flood,bad_frames,nested_json,"
                    "text_before_photo,unknown_type,photo_bomb_png,not_json",
                    "--hostile-every-s", "3", "--drain-s", "240"],
                   check=True, env=env, cwd=REPO, timeout=900, capture_output=True)
    result = json.loads(out.read_text())
    jobs = result["jobs"]
    assert result["complete"] and jobs["lost"] == 0 and jobs["failed"] == 0, jobs
    assert jobs["succeeded"] >= 1 and jobs["cancelled_by_client"] >= 1, jobs
    assert jobs["results_downloaded_ok"] == jobs["succeeded"], jobs
    assert not any(code.startswith("5") for code in jobs["refused"]), jobs["refused"]
    assert result["hostile_unexpected_total"] == 0, result["hostile"]
    assert {"drip", "head_one_write", "jpeg_bomb", "live_photo_bomb_jpeg", "live_flood"} <= set(
        result["hostile"])
    assert result["live"]["frames_answered"] >= 1 and not result["live"]["errors"], result["live"]
    assert result["healthz_latency_ms"]["not_200_outside_outage"] == 0
    assert result["rss_mb"]["peak_over_warm"] <= 500, result["rss_mb"]
    assert result["server_log_tracebacks"] == 0
