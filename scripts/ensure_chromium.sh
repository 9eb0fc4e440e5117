#!/usr/bin/env bash
# Run by scripts/test: the browser test (tests/e2e/test_browser.py) drives Debian's Chromium through
# Playwright, which never downloads a browser of its own. When no Chromium is found and this runs as
# root (as CI does), it is installed from Debian's packages; otherwise the test fails saying how.
set -euo pipefail
if [ -n "${SAE_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "scripts/test: installing Chromium from Debian's packages for the browser test" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "scripts/test: no Chromium found; the browser test will fail. Install it (apt-get install chromium) or set SAE_CHROMIUM." >&2
fi
