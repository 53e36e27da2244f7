"""onnxruntime-web, the runtime of the exported drawing page, from its npm package.

The project's set-up (`python -m train.inference.web_runtime`, which `tests/setup.sh` runs)
runs `npm install onnxruntime-web@VERSION` into a cache folder once; `etlkit export --format
web` copies the few files the page loads from there, so the page never fetches code from a CDN
and works from any static host.
"""

import os
import subprocess
import sys
from pathlib import Path

from etlkit.errors import EtlError

VERSION = "1.30.0"
# the plain WebAssembly build: the script that defines `ort`, the runtime, its module loader
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
INSTALL = "python -m train.inference.web_runtime"


def cache_dir() -> Path:
    """Where the package is installed: $ETLKIT_CACHE (default ~/.cache/etlkit)/onnxruntime-web-V."""
    root = os.environ.get("ETLKIT_CACHE") or Path.home() / ".cache" / "etlkit"
    return Path(root) / f"onnxruntime-web-{VERSION}"


def package_dir() -> Path:
    return cache_dir() / "node_modules" / "onnxruntime-web"


def runtime_files() -> list[Path]:
    """The files the page needs, or an EtlError with the command that installs them."""
    files = [package_dir() / "dist" / name for name in FILES]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise EtlError(f"{missing[0]}: onnxruntime-web {VERSION} is not installed; install it "
                       f"with `{INSTALL}` (needs npm)")
    return files


def install() -> Path:
    """npm install onnxruntime-web@VERSION into the cache folder (nothing to do when there)."""
    try:
        runtime_files()
        return package_dir()
    except EtlError:
        pass
    cache_dir().mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                           "--prefix", str(cache_dir()), f"onnxruntime-web@{VERSION}"],
                          capture_output=True, text=True)
    if done.returncode:
        raise EtlError(f"npm install onnxruntime-web@{VERSION} failed: "
                       f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    runtime_files()
    return package_dir()


if __name__ == "__main__":
    try:
        print(f"onnxruntime-web {VERSION} in {install()}")
    except (EtlError, FileNotFoundError) as err:  # FileNotFoundError: no npm
        sys.exit(f"error: {err}")
