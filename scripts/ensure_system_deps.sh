#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing: Qt's runtime
# libraries for the offscreen platform, and Xvfb + xcb libraries for real-window
# screenshots. Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
for pair in libEGL.so.1:libegl1 libGL.so.1:libgl1 libxkbcommon.so.0:libxkbcommon0 \
            libfontconfig.so.1:libfontconfig1 libfreetype.so.6:libfreetype6 \
            libglib-2.0.so.0:libglib2.0-0 libdbus-1.so.3:libdbus-1-3 \
            libxcb-icccm.so.4:libxcb-icccm4 libxcb-keysyms.so.1:libxcb-keysyms1 \
            libxcb-cursor.so.0:libxcb-cursor0 libxkbcommon-x11.so.0:libxkbcommon-x11-0; do
  have_lib "${pair%%:*}" || need+=("${pair##*:}")
done
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
fc-list 2>/dev/null | grep -q . || need+=(fonts-dejavu-core)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system packages missing: ${need[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install them here (needs root and apt-get); install them and re-run" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed: ${need[*]}"
