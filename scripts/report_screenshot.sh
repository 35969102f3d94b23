#!/usr/bin/env bash
# docs/report.png: the top of outputs/report/index.html as headless Chromium (Debian's chromium) renders it.
#   bash scripts/report_screenshot.sh [outputs/report/index.html] [docs/report.png]
set -euo pipefail
page=$(realpath "${1:-outputs/report/index.html}")
shot=${2:-docs/report.png}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" --window-size=1280,1100 \
  --screenshot="$shot" "file://$page" 2>/dev/null
echo "wrote $shot"
