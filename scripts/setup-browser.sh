#!/bin/sh
# What the browser tests and `etlkit export --format web` need beyond `pip install -e ".[test]"`:
# headless Chromium and its driver (Debian packages), selenium, and onnxruntime-web from npm
# (into ~/.cache/etlkit, or $ETLKIT_CACHE). Run from the repository root with the project's
# Python active; installs only what is missing (apt-get needs root).
set -eu
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
python -c "import selenium" 2>/dev/null || python -m pip install -q selenium
python -m train.inference.web_runtime
