#!/usr/bin/env bash
# Make sure a headful runner can start here: it runs Xvfb (the virtual display) and x11vnc
# (VNC on 127.0.0.1) itself and serves the noVNC client files. Debian packages them as
# xvfb, x11vnc and novnc (which pulls in websockify). Quick when they are there; installs
# them when we may (root with apt), else says what to install and fails.
set -euo pipefail

web_dir="${NOVNC_WEB_DIR:-/usr/share/novnc}"
packages=(xvfb x11vnc novnc websockify)

present() {
    command -v Xvfb >/dev/null 2>&1 && command -v x11vnc >/dev/null 2>&1 &&
        [[ -f "${web_dir}/vnc.html" ]]
}

if present; then
    echo "headful: using $(command -v Xvfb), $(command -v x11vnc) and ${web_dir}"
    exit 0
fi

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "headful: installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}"
fi

if present; then
    echo "headful: installed; using ${web_dir}"
else
    echo "headful: Xvfb, x11vnc and the noVNC client (${web_dir}/vnc.html) are needed;" \
        "install the packages ${packages[*]} (Debian/Ubuntu: apt-get install ${packages[*]})" >&2
    exit 1
fi
