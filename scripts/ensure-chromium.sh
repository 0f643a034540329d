#!/usr/bin/env bash
# Make sure the runner has a Chromium to drive: prefer one already on the machine, then the
# distribution package (when we may install it), and only then Playwright's download.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

found=""
if [[ -n "${CHROMIUM_PATH:-}" && -x "${CHROMIUM_PATH}" ]]; then
    found="${CHROMIUM_PATH}"
elif [[ -x /usr/bin/chromium ]]; then
    found=/usr/bin/chromium
else
    for name in chromium chromium-browser google-chrome; do
        if command -v "${name}" >/dev/null 2>&1; then
            found="$(command -v "${name}")"
            break
        fi
    done
fi

if [[ -n "${found}" ]]; then
    echo "chromium: using ${found}"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "chromium: installing the distribution package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation
else
    echo "chromium: downloading with Playwright"
    .venv/bin/playwright install chromium
fi
