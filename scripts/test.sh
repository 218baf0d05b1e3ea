#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite (the README's test command).
# torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[dev,serve,export,metrics]"
# Parity references from PyPI (tests/parity/test_*_package.py, and the fixtures that
# tests/parity/generated.py makes when ../shared is absent): the original first-order-model
# modules (deep-animator) and PaddleGAN's (ppgan, run by paddlepaddle). --no-deps, which an extra
# in pyproject.toml cannot say: both pin ancient numpy/imageio/librosa/torchvision, and the tests
# import only their FOMM modules (torch/paddle, numpy, scipy, yaml, tqdm, cv2, six).
python -m pip install --quiet "paddlepaddle==3.3.1" six
python -m pip install --quiet --no-deps "deep-animator==0.1.1" "ppgan==2.1.0"
# Browser test: Debian's Chromium + Playwright's Python driver (never downloads a browser).
bash scripts/install_browser.sh || echo "note: no browser could be installed; browser tests will skip"
# Broker tests (tests/test_app_broker.py) start a real redis-server: Debian's, installed when missing.
command -v redis-server >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || echo "note: no redis-server; broker tests will skip"
# pytest exits non-zero (5) when it collects no test, so an empty run fails loudly.
exec python -m pytest -q "$@"
