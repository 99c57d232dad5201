#!/usr/bin/env bash
# Render a report.html (or compare.html) in headless Chromium and save a PNG screenshot.
#   scripts/screenshot_report.sh runs/duo/report.html runs/duo/report_screenshot.png [width] [height]
# Needs Debian's chromium (apt-get install -y chromium). No network is used: the report is self-contained.
set -euo pipefail
html="$(realpath "$1")"
png="$(realpath -m "${2:-${1%.html}_screenshot.png}")"
width="${3:-1200}"
height="${4:-3000}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then echo "error: chromium not found (apt-get install -y chromium)" >&2; exit 2; fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${width},${height}" --screenshot="$png" "file://$html" >/dev/null 2>&1
test -s "$png" && echo "wrote $png"
