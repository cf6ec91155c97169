#!/usr/bin/env bash
# Boots real Xen (Debian's 4.17) with a Debian PV dom0 under QEMU (TCG) and runs
# one scenario as dom0's init; the scenario creates PV domUs with Xen's own xl.
#
#   scripts/real-xen/run.sh SCENARIO        (scenarios: scripts/real-xen/dom0/*.sh)
#
# Everything comes from Debian packages (apt-get download + dpkg -x, never
# installed on this host) and Conch's own `conch`, built with the RealXen trait.
# Exits 0 only if the scenario passes; the last line of standard output is a JSON
# object with its figures. Downloads and images are cached outside git.
#
# Environment:
#   CONCH_RIG_CACHE    cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/conch-real-xen)
#   CONCH_RIG_CONCH    the conch binary to boot (default: a release build of this checkout)
#   CONCH_RIG_TIMEOUT  seconds the whole boot may take (default: 900)
#   CONCH_RIG_VERBOSE  1: copy the serial console to standard error as it runs
#   RIG_*              passed to the scenario's environment (dom0's kernel command
#                      line), e.g. RIG_TEST_XENSTORE_ROUNDS=1
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
scenario="${1:-}"
if [ -z "$scenario" ] || [ ! -f "$here/dom0/$scenario.sh" ]; then
    echo "usage: $0 SCENARIO   (one of: $(cd "$here/dom0" && ls -- *.sh | grep -v '^rig\.sh$' | sed 's/\.sh$//' | tr '\n' ' '))" >&2
    exit 2
fi
cache="${CONCH_RIG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conch-real-xen}"
timeout_seconds="${CONCH_RIG_TIMEOUT:-900}"
# Seconds on a clock that never jumps: this machine's wall clock has been seen to
# step by many minutes, in both directions, in the middle of a run.
monotonic() { cut -d' ' -f1 /proc/uptime; }
started=$(monotonic)

say() { echo "rig: $*" >&2; }
die() {
    say "$*"
    printf '{"scenario":"%s","passed":false,"error":"%s"}\n' "$scenario" "$(echo "$*" | tr '"\\' "''")"
    exit 1
}

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"

# --- Debian packages -------------------------------------------------------
# Kernel packages are named by ABI version; resolve the metapackages' current one.
kernel_package() {
    apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1
}
dom0_kernel=$(kernel_package linux-image-amd64)
guest_kernel=$(kernel_package linux-image-cloud-amd64)
[ -n "$dom0_kernel" ] && [ -n "$guest_kernel" ] || die "cannot resolve Debian's kernel packages (run apt-get update)"
packages=(
    xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils
    libxenmisc4.17 libxenstore4 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1
    libxengnttab1 libxenhypfs1 libxentoolcore1 libxentoollog1 libyajl2 busybox-static
    qemu-system-xen qemu-system-data
    "$dom0_kernel" "$guest_kernel"
)
root="$cache/root"
stamp="$root/.packages"
if [ "$(cat "$stamp" 2>/dev/null)" != "${packages[*]}" ]; then
    say "downloading ${#packages[@]} Debian packages into $cache/debs"
    rm -rf "$cache/debs" "$root"
    mkdir -p "$cache/debs" "$root"
    (cd "$cache/debs" && apt-get download "${packages[@]}" >/dev/null) \
        || die "apt-get download failed (run apt-get update?)"
    for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$root"; done
    echo "${packages[*]}" >"$stamp"
fi
dom0_version=${dom0_kernel#linux-image-}
guest_version=${guest_kernel#linux-image-}
busybox="$root/bin/busybox"
xenbin="$root/usr/lib/xen-4.17/bin"

# --- Conch -----------------------------------------------------------------
conch="${CONCH_RIG_CONCH:-}"
if [ -z "$conch" ]; then
    say "building conch (release, RealXen)"
    (cd "$repo" && swift build -c release --product conch --traits RealXen >&2) || die "swift build failed"
    conch="$repo/.build/release/conch"
fi
[ -x "$conch" ] || die "no conch binary at $conch"
"$conch" version | grep -q 'real Xen: built in' || die "$conch was built without the RealXen trait (needs libxen-dev)"

# Conch's own PV guest kernel (Embedded Swift), for the scenarios that boot it.
# Rebuilt when any of its sources (its own, and the cores it compiles) changed.
pv_guest="$cache/pv-guest/conch-pv-guest"
if [ ! -x "$pv_guest" ] || [ -n "$(find "$repo/guest/pv" "$repo/Sources/XenABI" "$repo/Sources/XenMemory" \
    "$repo/Sources/XenRing" "$repo/Sources/ConsoleCore" "$repo/Sources/XenstoreWire" -newer "$pv_guest" -type f | head -n1)" ]; then
    say "building conch-pv-guest (Embedded Swift)"
    "$repo/guest/pv/build.sh" "$pv_guest" >/dev/null || die "cannot build conch-pv-guest (guest/pv/build.sh)"
fi

# --- Images ----------------------------------------------------------------
work="$cache/images/$scenario"
rm -rf "$work"
mkdir -p "$work"

# Copies executables and every shared library they load (ldd, with the
# unpacked packages' libraries first) into an image tree.
libpath="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu"
install_binaries() {
    local tree=$1 dest=$2
    shift 2
    mkdir -p "$tree$dest"
    local binary lib
    for binary in "$@"; do
        cp -L "$binary" "$tree$dest/"
        LD_LIBRARY_PATH="$libpath" ldd "$binary" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'
    done | sort -u | while read -r lib; do
        mkdir -p "$tree/lib/x86_64-linux-gnu"
        cp -L "$lib" "$tree/lib/x86_64-linux-gnu/"
    done
    # glibc loads libgcc_s at run time for pthread_cancel (ldd does not list it).
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$tree/lib/x86_64-linux-gnu/"
    mkdir -p "$tree/lib64"
    ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tree/lib64/ld-linux-x86-64.so.2"
    cp -L /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tree/lib/x86_64-linux-gnu/"
}

base_tree() {
    local tree=$1
    mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp,run,etc,var/log,var/lib,lib/modules}
    cp "$busybox" "$tree/bin/busybox"
    ln -sf busybox "$tree/bin/sh"
}

make_cpio() { (cd "$1" && find . | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) >"$2"; }

# The guest: Debian's cloud kernel and a busybox initramfs with Xen's xenstore clients.
guest_tree="$work/guest-tree"
base_tree "$guest_tree"
install_binaries "$guest_tree" /usr/bin "$root/usr/bin/xenstore"
for tool in read write ls list exists rm chmod watch; do ln -sf xenstore "$guest_tree/usr/bin/xenstore-$tool"; done
cp "$root/lib/modules/$guest_version/kernel/drivers/net/xen-netfront.ko" "$guest_tree/lib/modules/"
install -m 0755 "$here/guest/init" "$guest_tree/rig-main"
cc -static -O2 -o "$guest_tree/init" "$here/rig-init.c" || die "cannot build rig-init (needs cc and libc6-dev)"
make_cpio "$guest_tree" "$work/guest.cpio"

# dom0: the scenario as /init, Xen's userspace, the dom0 modules, Conch, the guest.
dom0_tree="$work/dom0-tree"
base_tree "$dom0_tree"
# Where Debian puts them: libxl runs xenconsole from there for `xl console`.
install_binaries "$dom0_tree" /usr/lib/xen-4.17/bin \
    "$xenbin/xl" "$xenbin/xenstored" "$xenbin/xenconsoled" "$xenbin/xen-init-dom0" \
    "$xenbin/test-xenstore" "$xenbin/xenconsole"
install_binaries "$dom0_tree" /usr/sbin "$root/usr/bin/xenstore"
for tool in read write ls list exists rm chmod watch control; do ln -sf xenstore "$dom0_tree/usr/sbin/xenstore-$tool"; done
install_binaries "$dom0_tree" /usr/sbin "$conch"
# Without debug information, but with its symbols: Swift's backtracer (below)
# names the functions of a crash.
strip --strip-debug "$dom0_tree/usr/sbin/conch"
# Swift's crash backtracer, so that a conch process that crashes in dom0 says
# where (rig.sh turns it on with SWIFT_BACKTRACE).
backtracer="$(dirname "$(readlink -f "$(command -v swift)")")/../libexec/swift/linux/swift-backtrace-static"
if [ -x "$backtracer" ]; then
    install_binaries "$dom0_tree" /usr/libexec "$backtracer"
else
    say "no swift-backtrace-static beside the toolchain: crashes in dom0 will have no backtrace"
fi
# Conch's device model is conch itself, run by this name (xl.cfg's device_model_override).
mkdir -p "$dom0_tree/usr/lib/conch"
ln -s /usr/sbin/conch "$dom0_tree/usr/lib/conch/conch-device-model"
# QEMU as libxl runs it for channels (the reference the side-by-side scenario
# measures against), with the keymaps it reads even for -vnc none.
install_binaries "$dom0_tree" /usr/libexec "$root/usr/libexec/xen-qemu-system-i386"
mkdir -p "$dom0_tree/usr/share/qemu"
cp -r "$root/usr/share/qemu/keymaps" "$dom0_tree/usr/share/qemu/"
# A pty driver for the scenarios that type at a console (dom0 has no tmux or expect).
cc -static -O2 -o "$dom0_tree/usr/sbin/rig-pty" "$here/rig-pty.c" -lutil || die "cannot build rig-pty (needs cc and libc6-dev)"
modules="$root/lib/modules/$dom0_version/kernel/drivers"
cp "$modules"/xen/{xen-evtchn,xen-gntdev,xen-gntalloc,xen-privcmd}.ko "$modules/xen/xenfs/xenfs.ko" \
    "$modules/net/xen-netback/xen-netback.ko" "$dom0_tree/lib/modules/"
mkdir -p "$dom0_tree"/{rig,guest,etc/xen,var/lib/xen,var/log/xen}
ln -s /run "$dom0_tree/var/run"
install -m 0755 "$here/dom0/$scenario.sh" "$dom0_tree/init"
install -m 0644 "$here/dom0/rig.sh" "$dom0_tree/rig/rig.sh"
cp "$root/boot/vmlinuz-$guest_version" "$dom0_tree/guest/vmlinuz"
cp "$pv_guest" "$dom0_tree/guest/conch-pv-guest"
cp "$work/guest.cpio" "$dom0_tree/guest/initrd.cpio"
make_cpio "$dom0_tree" "$work/dom0.cpio"
rm -rf "$guest_tree" "$dom0_tree"

gunzip -c "$root/boot/xen-4.17-amd64.gz" >"$work/xen"
say "images: dom0 $(du -m "$work/dom0.cpio" | cut -f1) MB, guest $(du -m "$work/guest.cpio" | cut -f1) MB"

# --- Boot ------------------------------------------------------------------
log="$work/serial.log"
qemu_pid=
cleanup() { [ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null || true; }
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# dom0's kernel hands unknown NAME=value parameters to /init as its environment.
scenario_environment=$(env | grep -E '^RIG_[A-Z0-9_]+=[A-Za-z0-9._-]*$' | tr '\n' ' ' || true)
booted=$(monotonic)
say "booting Xen + dom0 under QEMU (TCG), scenario $scenario, timeout ${timeout_seconds}s"
# The CPU flags and smap=0 smep=0 are needed: without them dom0 faults at once
# in create_bounce_frame under TCG (see docs/TESTING.md). No XSAVE and no AVX:
# with them, processes in dom0 and in guests (conch, xl, busybox) died now and
# then of a corrupted heap; TCG's AVX is new in QEMU 7.2.
qemu-system-x86_64 -accel tcg -cpu max,-smap,-smep,-pku,-la57,-xsave,-avx,-avx2 -m 2048 -smp 2 \
    -display none -no-reboot -serial "file:$log" -monitor none -nodefaults \
    -kernel "$work/xen" \
    -append "console=com1 com1=115200 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 loglvl=all guest_loglvl=all smap=0 smep=0" \
    -initrd "$root/boot/vmlinuz-$dom0_version console=hvc0 earlyprintk=xen quiet $scenario_environment,$work/dom0.cpio" \
    </dev/null >"$work/qemu.out" 2>&1 &
qemu_pid=$!
if [ "${CONCH_RIG_VERBOSE:-0}" = 1 ]; then tail -n +1 -F "$log" 2>/dev/null >&2 & fi
deadline=$(($(monotonic | cut -d. -f1) + timeout_seconds))
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$(monotonic | cut -d. -f1)" -ge "$deadline" ]; then
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
        tail -n 40 "$log" >&2
        die "timed out after ${timeout_seconds}s (serial log: $log)"
    fi
    sleep 1
done
wait "$qemu_pid" || true
qemu_pid=
finished=$(monotonic)

result=$(grep -a '^RIG-RESULT ' "$log" | tail -n1 | cut -d' ' -f2- | tr -d '\r')
if ! grep -aq '^RIG-PASS' "$log"; then
    tail -n 60 "$log" >&2
    reason=$(grep -a '^RIG-FAIL' "$log" | head -n1 | cut -d' ' -f2- | tr -d '\r')
    die "scenario $scenario failed: ${reason:-dom0 stopped without a verdict} (serial log: $log)"
fi
[ -n "$result" ] || result='{}'
boot=$(awk -v a="$booted" -v b="$finished" 'BEGIN{printf "%.1f", b-a}')
total=$(awk -v a="$started" -v b="$finished" 'BEGIN{printf "%.1f", b-a}')
say "passed: $scenario (QEMU ${boot}s, end to end ${total}s)"
printf '{"scenario":"%s","passed":true,"qemu_seconds":%s,"total_seconds":%s,"figures":%s}\n' \
    "$scenario" "$boot" "$total" "$result"
