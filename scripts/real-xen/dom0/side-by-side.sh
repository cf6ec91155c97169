#!/bin/sh
# Scenario `side-by-side`: one guest workload served first by Xen's own backends
# (xenconsoled for console 0, QEMU — Debian's xen-qemu-system-i386, as libxl runs
# it — for the channel), then by Conch (conch consoled, and Conch's device model),
# in the same boot, on the same xenstored (conch xenstored), one after the other.
# The guest prints `lines` boot lines on console 0, then streams `kib` KiB on a
# socket channel that a dom0 client reads. For each side:
#   create_to_first_byte_seconds  xl create → the first byte in console 0's log
#   console_bytes_per_second      console 0's boot lines, first byte to last
#   channel_bytes_per_second      the channel's stream, go → the end mark in dom0
#   dom0_cpu_seconds              CPU of the side's backend processes, create → done
#   dom0_rss_kib                  their resident memory with the guest running
#   device_model_rss_kib          of that, the device model's (one per guest)
# and each pair's ratio (Conch / Xen's). TCG makes every figure slow and noisy;
# the ratios are what to read.
. /rig/rig.sh
rig_dom0_up
lines=${RIG_BOOT_LINES:-2000}
kib=${RIG_STREAM_KIB:-512}

rig_start_conch_xenstored
rig_check "xen-init-dom0" xen-init-dom0

# CPU ticks (utime + stime) and VmRSS (KiB) summed over pids.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
rss_kib() {
    local total=0 pid
    for pid in "$@"; do
        [ -r "/proc/$pid/status" ] || continue
        total=$((total + $(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "null" }'; }

# run_side NAME DEVICE_MODEL BACKEND_PIDS_FUNCTION — one guest, measured.
run_side() {
    local side=$1 model=$2 pids_of=$3
    local name="$side-g" sock="/run/$side-stream.sock"
    local config
    config=$(rig_guest_config "$name" stream \
        "device_model_override = \"$model\"" \
        "channel = [ \"name=rig.dummy, connection=pty\", \"name=org.conch.stream, connection=socket, path=$sock\" ]")
    sed -i "s/rig=stream/rig=stream lines=$lines kib=$kib/" "$config"
    local log
    log=$(rig_guest_log "$name")
    rm -f "$log"
    local before_pids before start
    before_pids=$($pids_of)
    before=$(cpu_ticks $before_pids)
    start=$(rig_now)
    rig_xl_create "$side: xl create $name" "$name" "$config"
    local id
    id=$(rig_domid "$name")
    local pids
    pids=$( (
        $pids_of
        xenstore-read "/local/domain/$id/image/device-model-pid" 2>/dev/null
    ) | tr ' ' '\n' | grep . | sort -u | tr '\n' ' ')
    rig_log "$side: backend processes: $pids"
    rig_wait 120 "$side: the first byte of console 0" test -s "$log"
    local first
    first=$(rig_now)
    rig_wait 300 "$side: the last boot line" grep -q "RIG-BOOT-DONE" "$log"
    local done_at
    done_at=$(rig_now)
    rig_check "$side: every boot line, in order" test "$(rig_boot_lines "$log")" = "$lines"
    rig_check "$side: ... in order" rig_boot_in_order "$log"
    local console_bytes
    console_bytes=$(grep -a '^RIG-BOOT' "$log" | wc -c)

    # The channel: a dom0 client first (QEMU drops what nobody reads), then go.
    rig_wait 120 "$side: the guest to find its channel" grep -q "RIG-GUEST channel org.conch.stream=\[/dev/hvc" "$log"
    rig_wait 30 "$side: the channel's socket" test -S "$sock"
    (sleep 600 | conch console "$name" --channel org.conch.stream >"/var/log/rig/$side-stream.out" 2>&1) &
    local client=$!
    sleep 1
    local go
    go=$(rig_now)
    xenstore-write "/local/domain/$id/data/rig-go" 1
    rig_wait 300 "$side: the stream's end in dom0" grep -q "RIG-STREAM-END" "/var/log/rig/$side-stream.out"
    local streamed
    streamed=$(rig_now)
    local received
    received=$(wc -c <"/var/log/rig/$side-stream.out")
    rig_check "$side: the whole stream arrived ($received bytes)" test "$received" -ge $((kib * 1024))
    local after rss
    after=$(cpu_ticks $pids)
    rss=$(rss_kib $pids)
    local pid
    for pid in $pids; do
        rig_log "$side: pid $pid $(cat /proc/$pid/comm): $(cpu_ticks $pid) ticks, $(rss_kib $pid) KiB"
    done
    local model
    model=$(xenstore-read "/local/domain/$id/image/device-model-pid" 2>/dev/null)
    kill "$client" 2>/dev/null
    pkill -f "conch console $name" 2>/dev/null

    eval "${side}_first=$(rig_elapsed "$start" "$first")"
    eval "${side}_console=$(awk -v b="$console_bytes" -v s="$(rig_elapsed "$first" "$done_at")" 'BEGIN{printf "%.0f", b / (s > 0 ? s : 0.01)}')"
    eval "${side}_channel=$(awk -v b="$received" -v s="$(rig_elapsed "$go" "$streamed")" 'BEGIN{printf "%.0f", b / (s > 0 ? s : 0.01)}')"
    eval "${side}_cpu=$(awk -v t="$((after - before))" 'BEGIN{printf "%.2f", t / 100}')"
    eval "${side}_rss=$rss"
    eval "${side}_model_rss=$(rss_kib $model)"
    rig_check "$side: xl destroy $name" timeout 60 xl destroy "$name"
}

xen_pids() { pidof xenconsoled; }
conch_pids() { for pid in $(pidof conch); do [ "$pid" = "$RIG_XENSTORED_PID" ] || echo "$pid"; done; }

rig_start_xenconsoled
rig_wait 30 "xenconsoled" pidof xenconsoled
run_side xen /usr/libexec/xen-qemu-system-i386 xen_pids
rig_stop_consoled

rig_start_conch_consoled
run_side conch /usr/lib/conch/conch-device-model conch_pids
rig_check "no QEMU ran for Conch's guest" sh -c '! pidof xen-qemu-system-i386'

rig_figure boot_lines "$lines"
rig_figure stream_kib "$kib"
for figure in first console channel cpu rss model_rss; do
    eval "xen=\$xen_$figure conch=\$conch_$figure"
    case $figure in
    first) name=create_to_first_byte_seconds ;;
    console) name=console_bytes_per_second ;;
    channel) name=channel_bytes_per_second ;;
    cpu) name=dom0_cpu_seconds ;;
    rss) name=dom0_rss_kib ;;
    model_rss) name=device_model_rss_kib ;;
    esac
    rig_figure "$name" "{\"xen\":$xen,\"conch\":$conch,\"ratio\":$(ratio "$conch" "$xen")}"
done
rig_pass
