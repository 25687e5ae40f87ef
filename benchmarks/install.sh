#!/usr/bin/env bash
# Installs the benchmark tools from Debian if they are absent: nginx-light (the upstream that serves
# recorded responses) and wrk (the load generator). Called by `make bench`; safe to run repeatedly.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)

if [ "${#need[@]}" -eq 0 ]; then
    echo "benchmarks/install.sh: nginx and wrk already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "benchmarks/install.sh: need ${need[*]} but apt-get is not available; install them by hand" >&2
    exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
fi

echo "benchmarks/install.sh: installing ${need[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
