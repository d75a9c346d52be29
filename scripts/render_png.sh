#!/usr/bin/env bash
# Renders a DistillKit report page (sweep.html, fit.html, a run's report.html) to a PNG with
# headless Chromium, for docs and slides. The pages are self-contained (inline SVG, no scripts),
# so the PNG is exactly what a browser shows.
#
#   scripts/render_png.sh PAGE.html OUT.png [SECTION] [WIDTHxHEIGHT]
#
# SECTION: the heading of one <h2> section to render alone (e.g. "Pareto frontiers"); default:
# the whole page. WIDTHxHEIGHT: the browser window, default 840x880 for a section, 1340x2400
# for a page. Installs Debian's chromium when no Chromium is found.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 5,9p "$0" >&2; exit 64; }
page=$1 out=$2 section=${3:-} size=${4:-}
[ -f "$page" ] || { echo "render_png: $page: no such file" >&2; exit 66; }
[[ -z "$size" || "$size" =~ ^[0-9]+x[0-9]+$ ]] || { echo "render_png: window size '$size' is not WIDTHxHEIGHT" >&2; exit 64; }
[ -n "$size" ] || size=$([ -n "$section" ] && echo 840x880 || echo 1340x2400)

browser=""
for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null; then browser=$name; break; fi
done
if [ -z "$browser" ]; then
    source "$(dirname "$0")/apt-install.sh"
    apt_install chromium
    browser=chromium
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source_page=$page
if [ -n "$section" ]; then
    # The page's head (its styles) and the one section: from its <h2> to the next <h2>.
    python3 - "$page" "$section" "$work/section.html" <<'PY'
import re, sys
page, section, out = sys.argv[1:]
text = open(page, encoding="utf-8").read()
body_at = text.find("<body")
start = text.find(f"<h2>{section}</h2>")
if body_at < 0 or start < 0:
    sys.exit(f"render_png: {page} has no <h2>{section}</h2> section")
head = text[:text.find(">", body_at) + 1]  # up to and with the <body ...> tag
end = text.find("<h2>", start + 4)
body = text[start:end if end >= 0 else text.rfind("</body>")]
open(out, "w", encoding="utf-8").write(head + body + "</body></html>\n")
PY
    source_page=$work/section.html
fi
# As root Chromium needs --no-sandbox; the profile goes to the temporary folder.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/profile" \
    --window-size="${size/x/,}" --screenshot="$work/out.png" "file://$(realpath "$source_page")" >/dev/null 2>&1 \
    || { echo "render_png: $browser could not render $page" >&2; exit 1; }
mv "$work/out.png" "$out"
echo "render_png: wrote $out ($size)" >&2
