#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (the README's test command).
# torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,serve,export,metrics]"
# Browser test: Debian's Chromium + Playwright's Python driver (never downloads a browser).
bash scripts/install_browser.sh || echo "note: no browser could be installed; browser tests will skip"
# pytest exits non-zero (5) when it collects no test, so an empty run fails loudly.
exec python -m pytest -q "$@"
