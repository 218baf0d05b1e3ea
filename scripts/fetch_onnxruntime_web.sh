#!/usr/bin/env bash
# Fetch onnxruntime-web (pinned version, sha512-checked, from the npm registry) into
# fomm/web/vendor/onnxruntime-web/: what `fomm export-web`, `fomm serve`'s /device/ page and the
# browser tests need. Only the npm registry is contacted; nothing is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m fomm.web.vendor
