#!/usr/bin/env bash
# Runs Debian's cxenstored (Xen 4.17) on a machine without Xen, serving only its
# Unix socket, so that `conch xenstored` can be measured beside it anywhere:
#
#   scripts/bench/cxenstored-without-xen.sh DIR      socket DIR/socket; runs until killed
#   . scripts/bench/cxenstored-without-xen.sh --env  only sets XEN_TOOLS and LD_LIBRARY_PATH
#
# Xen's userspace comes from Debian's packages, downloaded and unpacked (never
# installed) into $CONCH_BENCH_CACHE (default ~/.cache/conch-bench): xen-utils-4.17
# (cxenstored, test-xenstore) and the libraries they link. cxenstored needs the
# hypervisor only to serve guests' rings; cxenstored-shim.c, preloaded, stands in
# for it (see that file), and clients on the socket are served as on a Xen host.
# Not a test and not run by CI: a baseline for benchmarks (docs/TESTING.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="${CONCH_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conch-bench}"
packages=(xen-utils-4.17 libxenmisc4.17 libxenstore4 libxencall1 libxendevicemodel1 libxenevtchn1
    libxenforeignmemory1 libxengnttab1 libxenhypfs1 libxentoolcore1 libxentoollog1 libyajl2)

root="$cache/root"
if [ ! -x "$root/usr/lib/xen-4.17/bin/xenstored" ]; then
    mkdir -p "$cache/debs"
    (cd "$cache/debs" && apt-get download "${packages[@]}" >/dev/null 2>&1) \
        || { echo "apt-get download failed (run apt-get update?)" >&2; exit 1; }
    for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$root"; done
fi
shim="$cache/cxenstored-shim.so"
if [ ! -f "$shim" ] || [ "$here/cxenstored-shim.c" -nt "$shim" ]; then
    compiler=$(command -v cc || command -v gcc || command -v clang) \
        || { echo "no C compiler (cc, gcc or clang) to build the shim" >&2; exit 1; }
    "$compiler" -shared -fPIC -O2 -Wall -o "$shim" "$here/cxenstored-shim.c" -ldl
fi
export XEN_TOOLS="$root/usr/lib/xen-4.17/bin"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CXENSTORED_SHIM="$shim"
[ "${1:-}" = --env ] && return 0 2>/dev/null

dir=${1:?usage: cxenstored-without-xen.sh DIR}
mkdir -p "$dir"
# -N: stay in the foreground; XENSTORED_RUNDIR: where the socket goes.
XENSTORED_RUNDIR="$dir" LD_PRELOAD="$shim" exec "$XEN_TOOLS/xenstored" -N
