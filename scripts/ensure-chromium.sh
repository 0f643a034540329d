#!/usr/bin/env bash
# Make sure the runner has a Chromium to drive: prefer one already on the machine, then the
# distribution package (when we may install it), and only then Playwright's download.
# Headless runs want the headless shell as well (figranium_runner.browser says why); it is
# installed beside a distribution Chromium when we may, and Playwright's download has its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

can_apt() { [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

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

shell_found=""
if [[ -n "${CHROMIUM_HEADLESS_PATH:-}" && -x "${CHROMIUM_HEADLESS_PATH}" ]]; then
    shell_found="${CHROMIUM_HEADLESS_PATH}"
elif command -v chromium-headless-shell >/dev/null 2>&1; then
    shell_found="$(command -v chromium-headless-shell)"
fi

if [[ -n "${found}" ]]; then
    echo "chromium: using ${found}"
    if [[ -n "${shell_found}" ]]; then
        echo "chromium: headless runs use ${shell_found}"
    elif [[ "${found}" == /usr/bin/chromium ]] && can_apt; then
        echo "chromium: installing the distribution's headless shell"
        apt_install chromium-headless-shell
    else
        echo "chromium: no headless shell; headless runs use ${found}"
    fi
elif can_apt; then
    echo "chromium: installing the distribution packages"
    apt_install chromium chromium-headless-shell fonts-liberation
else
    echo "chromium: downloading with Playwright"
    .venv/bin/playwright install chromium
fi
