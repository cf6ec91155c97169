#!/usr/bin/env bash
# Builds conch-pv-guest, Conch's 64-bit Xen PV guest kernel, with Embedded Swift:
# Conch's pure cores compiled for x86_64-unknown-none-elf as they are (one source
# of truth with the simulator's guest), the kernel's own Swift, entry.S, and a
# linker script. Usage: guest/pv/build.sh [OUTPUT] (default .build/pv-guest/conch-pv-guest).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
output="${1:-$repo/.build/pv-guest/conch-pv-guest}"
work="$(dirname "$output")/objects"
mkdir -p "$work/modules"
swiftc=${SWIFTC:-swiftc}
clang=${CLANG:-$(dirname "$(command -v "$swiftc")")/clang}
lld=${LLD:-$(dirname "$(command -v "$swiftc")")/ld.lld}
embedded=(-enable-experimental-feature Embedded -target x86_64-unknown-none-elf -wmo -parse-as-library -Osize
    -Xfrontend -disable-stack-protector -I "$work/modules")
toolchain="$(cd "$(dirname "$(command -v "$swiftc")")/.." && pwd)"
# Unicode tables for String, and compiler-rt for 128-bit division.
libraries=("$toolchain/lib/swift/embedded/x86_64-unknown-none-elf/libswiftUnicodeDataTables.a"
    "$(ls "$toolchain"/lib/clang/*/lib/linux/libclang_rt.builtins-x86_64.a | head -n1)")
objects=()
# module NAME SOURCES...: one core, compiled for the guest.
module() {
    local name=$1
    shift
    "$swiftc" "${embedded[@]}" -module-name "$name" -emit-module -emit-module-path "$work/modules/$name.swiftmodule" \
        -c "$@" -o "$work/$name.o"
    objects+=("$work/$name.o")
}
cores="$repo/Sources"
module XenABI "$cores"/XenABI/*.swift
module XenMemory "$cores"/XenMemory/SharedMemory.swift
module XenRing "$cores"/XenRing/*.swift
# The frontend's policy and boot history (and the saturating add they use); the
# rest of ConsoleCore is consoled's.
module ConsoleCore "$cores"/ConsoleCore/FrontendWritePolicy.swift "$cores"/ConsoleCore/ConsoleHistory.swift \
    "$cores"/ConsoleCore/TokenBucket.swift
module XenstoreWire "$cores"/XenstoreWire/*.swift
module ConchPVGuest "$here"/Sources/*.swift
"$clang" -target x86_64-unknown-none-elf -I /usr/include -c "$here/entry.S" -o "$work/entry.o"
"$lld" -static -nostdlib -z max-page-size=4096 -T "$here/pv-guest.ld" -o "$output" "$work/entry.o" "${objects[@]}" "${libraries[@]}"
echo "$output"
