#!/usr/bin/env bash
# Install what tests/test_app_browser.py needs: Debian's Chromium and the playwright Python package.
# Playwright never downloads a browser here: the test launches /usr/bin/chromium.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "install_browser: no chromium and no apt-get; the browser test will be skipped" >&2
  fi
fi

if ! python3 -c "import playwright" >/dev/null 2>&1; then
  # the wheel carries its own driver; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD keeps it from fetching browsers
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 python3 -m pip install -q "playwright>=1.40"
fi

# onnxruntime-web for the on-device page (tests/test_web_*.py): pinned, sha512-checked, from npm
bash "$(dirname "$0")/fetch_onnxruntime_web.sh"

command -v chromium >/dev/null 2>&1 && chromium --version || true
