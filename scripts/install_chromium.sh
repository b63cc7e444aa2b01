#!/usr/bin/env bash
# The page's tests drive a real Chromium. Install Debian's (or Ubuntu's) package when no
# Chromium is on PATH; CHROMIUM may name another one instead.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
    || command -v google-chrome >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "No Chromium, and no apt-get to install it: install Chromium, or set CHROMIUM" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
