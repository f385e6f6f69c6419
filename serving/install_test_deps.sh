#!/usr/bin/env bash
# Install what tests/serving needs on a fresh Debian machine (called by .ci/run):
#   - Node packages from the lock files: serving/node (onnxruntime-node, pngjs) and serving/web
#     (onnxruntime-web, playwright-core). ONNXRUNTIME_NODE_INSTALL=skip keeps onnxruntime-node's
#     postinstall from fetching CUDA files from NuGet (the CPU build ships in the package).
#   - Debian's chromium (headless browser for tests/serving/test_web.py) when /usr/bin/chromium is missing.
# Requires node >= 20 and npm. Idempotent; uses sudo only when not root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

command -v node >/dev/null || { echo "install_test_deps: node is not installed (need Node.js >= 20 and npm)" >&2; exit 1; }
for pkg in node web; do
  echo "install_test_deps: npm ci in serving/$pkg"
  (cd "$here/$pkg" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund)
done

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install_test_deps: apt-get install chromium"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi
echo "install_test_deps: node $(node --version), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium missing')"
