#!/usr/bin/env bash
# Make sure Playwright can record run videos. Its recorder runs the ffmpeg found at
# <browsers dir>/ffmpeg-<revision>/ffmpeg-linux; any ffmpeg with libvpx-vp9 does, so prefer
# one already on the machine, then the distribution package (when we may install it), and
# only then Playwright's download. Idempotent: nothing happens when that file is there.
set -euo pipefail
# A relative browsers path means relative to where we were called from, for Playwright too.
if [[ -n "${PLAYWRIGHT_BROWSERS_PATH:-}" && "${PLAYWRIGHT_BROWSERS_PATH}" != 0 &&
      "${PLAYWRIGHT_BROWSERS_PATH}" != /* ]]; then
    export PLAYWRIGHT_BROWSERS_PATH="$(pwd)/${PLAYWRIGHT_BROWSERS_PATH}"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "$(uname -s)" != Linux ]]; then
    echo "ffmpeg: not Linux, using Playwright's download"
    exec .venv/bin/playwright install ffmpeg
fi

# Where this Playwright looks, resolved as its registry does (see PLAYWRIGHT_BROWSERS_PATH).
target="$(.venv/bin/python - <<'EOF'
import json
import os
from pathlib import Path

import playwright

package = Path(playwright.__file__).parent / "driver" / "package"
browsers = json.loads((package / "browsers.json").read_text())["browsers"]
revision = next(b["revision"] for b in browsers if b["name"] == "ffmpeg")
configured = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
if configured == "0":
    registry = package / ".local-browsers"
elif configured:
    registry = Path(configured)
else:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    registry = Path(cache) / "ms-playwright"
print(registry / f"ffmpeg-{revision}" / "ffmpeg-linux")
EOF
)"

if [[ -x "${target}" ]]; then
    echo "ffmpeg: using ${target}"
    exit 0
fi

usable() {
    # Not grep -q: quitting early would kill ffmpeg with SIGPIPE and fail the pipeline.
    command -v ffmpeg >/dev/null 2>&1 &&
        ffmpeg -hide_banner -encoders 2>/dev/null | grep libvpx-vp9 >/dev/null
}

if ! usable && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ffmpeg: installing the distribution package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg
fi

if usable; then
    system="$(command -v ffmpeg)"
    echo "ffmpeg: linking ${system} as ${target}"
    mkdir -p "$(dirname "${target}")"
    ln -sfn "${system}" "${target}"
else
    echo "ffmpeg: downloading with Playwright"
    # Videos are optional (the runner checks at start and runs without them), so a failed
    # download must not fail the whole install.
    .venv/bin/playwright install ffmpeg || echo "ffmpeg: not available; runs will not be recorded"
fi
