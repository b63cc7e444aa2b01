#!/usr/bin/env bash
# `make cluster` runs Debian's (or Ubuntu's) nginx in front of two replicas. Install the
# package when no nginx is on PATH (or in /usr/sbin); NGINX may name another one instead.
# On a machine that runs systemd the package starts its own nginx on port 80 as well;
# `make cluster` never uses that one (`systemctl disable --now nginx` stops it).
set -euo pipefail
if [ -n "${NGINX:-}" ] || command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "No nginx, and no apt-get to install it: install nginx, or set NGINX" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx
