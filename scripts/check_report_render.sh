#!/usr/bin/env bash
# Render a report.html in headless Chromium, screenshot it, and check the screenshot is not blank.
# usage: scripts/check_report_render.sh RUN_DIR/report.html [OUT.png]
# Exit 0: rendered with content; 1: blank or failed render; 2: bad usage or chromium missing.
set -euo pipefail
html="${1:?usage: scripts/check_report_render.sh REPORT_HTML [OUT_PNG]}"
out="${2:-${html%.html}.png}"
[ -f "$html" ] || { echo "check_report_render: '$html' not found" >&2; exit 2; }
browser="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$browser" ] || { echo "check_report_render: chromium not installed (apt-get install chromium)" >&2; exit 2; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: CI runs as root; the page has no scripts and no network (--host-resolver-rules blocks all hosts)
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --host-resolver-rules="MAP * ~NOTFOUND" --window-size=1200,2400 --screenshot="$out" \
  "file://$(realpath "$html")" >/dev/null 2>&1 || true
[ -s "$out" ] || { echo "check_report_render: chromium wrote no screenshot" >&2; exit 1; }
python="${PYTHON:-$(dirname "$0")/../.venv/bin/python}"
[ -x "$python" ] || python=python3
"$python" - "$out" <<'PY'
import sys
from PIL import Image
# Non-blank: more than 1% of the pixels differ from the page background (the most common colour).
image = Image.open(sys.argv[1]).convert("RGB")
colours = image.getcolors(maxcolors=1 << 24)
background = max(colours)[0]
share = 1.0 - background / (image.width * image.height)
print(f"screenshot {sys.argv[1]}: {image.width}x{image.height}, {len(colours)} colours, {share:.1%} non-background pixels")
sys.exit(0 if share > 0.01 and len(colours) > 16 else 1)
PY
