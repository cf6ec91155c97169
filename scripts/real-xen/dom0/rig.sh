# Shared by the rig's dom0 scenarios (busybox sh, sourced by /init).
# A scenario ends with rig_pass or rig_fail; both power the machine off, which
# makes Xen stop QEMU. Results go to the serial console as marked lines that
# scripts/real-xen/run.sh reads:
#   RIG-RESULT {json}   the scenario's figures (the last one wins)
#   RIG-PASS            the verdict
#   RIG-FAIL reason     the verdict, and why

export PATH=/usr/sbin:/usr/lib/xen-4.17/bin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
# A conch process that crashes prints its backtrace on its standard error.
export SWIFT_BACKTRACE=enable=yes,interactive=no,color=no,swift-backtrace=/usr/libexec/swift-backtrace-static

RIG_FIGURES=""
# fd 3 is the console, for messages and verdicts from inside $(...) too.
exec 3>&1

rig_log() { echo "rig[$(rig_now)]: $*" >&3; }

# Seconds since boot, to 0.01 s (busybox date has no %N).
rig_now() { cut -d' ' -f1 /proc/uptime; }
rig_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }

# rig_figure name value — a number, or a JSON literal.
rig_figure() {
    [ -n "$RIG_FIGURES" ] && RIG_FIGURES="$RIG_FIGURES,"
    RIG_FIGURES="$RIG_FIGURES\"$1\":$2"
}
rig_text() { rig_figure "$1" "\"$(echo "$2" | tr '"\\' "''")\""; }

rig_finish() {
    [ "${RIG_XL_CRASHES:-0}" = 0 ] || rig_figure xl_crashes_after_create "$RIG_XL_CRASHES"
    sync
    echo "RIG-RESULT {$RIG_FIGURES}" >&3
    echo "$1" >&3
    sleep 1
    poweroff -f
}
rig_pass() { rig_finish "RIG-PASS"; }
rig_fail() {
    rig_log "FAILED: $*"
    xl list >&3 2>&1
    echo "----- xenstore-ls -f /local/domain (last 60 lines)" >&3
    timeout 10 xenstore-ls -f /local/domain 2>&1 | tail -n 60 >&3
    if [ -n "$RIG_CONSOLED_PID" ] && ! kill -0 "$RIG_CONSOLED_PID" 2>/dev/null; then
        wait "$RIG_CONSOLED_PID" 2>/dev/null
        echo "----- the consoled the rig started last (pid $RIG_CONSOLED_PID) has exited, status $?" >&3
    fi
    # Conch's processes: alive or not, and where each thread waits.
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        case "$(tr '\0' ' ' <$dir/cmdline 2>/dev/null)" in *conch*) ;; *) continue ;; esac
        echo "----- pid $pid: $(tr '\0' ' ' <$dir/cmdline 2>/dev/null)" >&3
        for task in /proc/$pid/task/*; do
            echo "  $(sed -n 's/^State:\t//p' $task/status 2>/dev/null) $(cat $task/comm 2>/dev/null) wchan=$(cat $task/wchan 2>/dev/null)" >&3
        done
    done
    for f in /var/log/rig/*.log /var/log/rig/*.out /var/log/xen/*.log /var/log/xen/console/*.log /run/conch/logs/consoled-keeper.log; do
        [ -f "$f" ] || continue
        # A crash's backtrace in full; otherwise the end of the log.
        if grep -q "Program crashed" "$f"; then
            echo "----- $f (from the crash)" >&3
            sed -n '/Program crashed/,$p' "$f" | head -n 300 >&3
            continue
        fi
        echo "----- $f (last 30 lines)" >&3
        tail -n 30 "$f" >&3
    done
    rig_text error "$*"
    rig_finish "RIG-FAIL $*"
}

# rig_wait SECONDS DESCRIPTION COMMAND... — retries COMMAND every 0.2 s.
rig_wait() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(cut -d. -f1 /proc/uptime) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ] || rig_fail "timed out after ${limit}s waiting for $what"
        sleep 0.2
    done
}

# rig_check DESCRIPTION COMMAND... — fails the scenario unless COMMAND succeeds.
rig_check() {
    local what=$1
    shift
    "$@" || rig_fail "$what"
    rig_log "ok: $what"
}

# Makes this a dom0 that xl can drive: filesystems, Xen's device modules, xenfs.
rig_dom0_up() {
    /bin/busybox --install -s /bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mkdir -p /dev/pts /dev/shm /var/log/rig /var/log/xen/console /var/lib/xenstored
    mount -t devpts devpts /dev/pts
    mount -t tmpfs tmpfs /run
    mkdir -p /run/xen /run/xenstored /run/lock /etc/xen
    # xenconsole takes a lock per console there; xl reads its (empty) defaults.
    ln -sfn /run/lock /var/lock
    touch /etc/xen/xl.conf
    for module in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback; do
        insmod "/lib/modules/$module.ko" || rig_fail "insmod $module"
    done
    mount -t xenfs xenfs /proc/xen || rig_fail "mount xenfs"
    grep -q control_d /proc/xen/capabilities || rig_fail "/proc/xen/capabilities does not say control_d"
    ip link set lo up
    rig_log "dom0 up: $(uname -r), $(cat /proc/xen/capabilities)"
}

# The host's xenstore daemon: conch xenstored, serving dom0's kernel ring, the
# tools' socket and every domain xl introduces.
rig_start_conch_xenstored() {
    conch xenstored --hypervisor xen "$@" >>/var/log/rig/conch-xenstored.log 2>&1 &
    RIG_XENSTORED_PID=$!
    rig_wait 60 "conch xenstored's socket" test -S /run/xenstored/socket
}

# The host's console daemon: conch consoled (console 0, and channels through
# Conch's device model), or Xen's xenconsoled as the reference.
# Starts conch consoled and waits until it serves its control socket. A killed
# consoled leaves its socket file behind: it goes first, so that the wait is for
# the new one; a consoled that exits while starting fails the scenario at once.
rig_start_conch_consoled() {
    rm -f /run/conch/consoled-control.sock
    conch consoled --hypervisor xen "$@" >>/var/log/rig/conch-consoled.log 2>&1 &
    RIG_CONSOLED_PID=$!
    rig_wait 60 "conch consoled's control socket" rig_consoled_started
}
rig_consoled_started() {
    if ! kill -0 "$RIG_CONSOLED_PID" 2>/dev/null; then
        wait "$RIG_CONSOLED_PID"
        rig_fail "conch consoled exited while starting (status $?)"
    fi
    test -S /run/conch/consoled-control.sock
}
rig_stop_consoled() {
    kill "$RIG_CONSOLED_PID" 2>/dev/null
    wait "$RIG_CONSOLED_PID" 2>/dev/null
}
rig_start_xenconsoled() {
    xenconsoled -i --log=guest --log-dir=/var/log/xen/console >>/var/log/rig/xenconsoled.log 2>&1 &
    RIG_CONSOLED_PID=$!
}

# Boot lines RIG-BOOT i/n a console log holds, and whether they are 1..n in order.
rig_boot_lines() {
    local count
    count=$(grep -ac '^RIG-BOOT [0-9]' "$1" 2>/dev/null)
    echo "${count:-0}"
}
rig_boot_in_order() {
    grep -a '^RIG-BOOT [0-9]' "$1" | sed 's|^RIG-BOOT \([0-9]*\)/.*|\1|' | awk '$1 != NR { exit 1 }'
}

# The xenstored for side-by-side runs, alone on the host: conch or Xen's
# cxenstored, each from an empty store. rig_start_bench_xenstored conch|cxenstored
rig_start_bench_xenstored() {
    rm -f /run/xenstored/socket /run/xenstored/socket_ro /run/xenstored/xenstored.journal
    rm -rf /var/lib/xenstored/*
    case "$1" in
    conch) conch xenstored --hypervisor xen >>/var/log/rig/bench-conch.log 2>&1 & ;;
    cxenstored) xenstored --no-fork --pid-file /run/bench-cxenstored.pid >>/var/log/rig/bench-cxenstored.log 2>&1 & ;;
    esac
    RIG_BENCH_PID=$!
    rig_wait 60 "$1's socket" test -S /run/xenstored/socket
}
rig_stop_xenstored() {
    kill "${1:-$RIG_XENSTORED_PID}" 2>/dev/null
    wait "${1:-$RIG_XENSTORED_PID}" 2>/dev/null
}

# The guests' kernel and initramfs, and an xl config naming them.
# rig_guest_config NAME EXTRA [more xl.cfg lines...]
rig_guest_config() {
    local name=$1 extra=$2
    shift 2
    {
        echo "name = \"$name\""
        echo "type = \"pv\""
        echo "kernel = \"/guest/vmlinuz\""
        echo "ramdisk = \"/guest/initrd.cpio\""
        echo "memory = 128"
        echo "vcpus = 1"
        echo "extra = \"console=hvc0 quiet rig=$extra\""
        for line in "$@"; do echo "$line"; done
    } >"/etc/xen/$name.cfg"
    echo "/etc/xen/$name.cfg"
}

# Conch's own PV kernel (docs/PV-GUEST.md) as a guest: rig_pv_guest_config NAME EXTRA
rig_pv_guest_config() {
    {
        echo "name = \"$1\""
        echo "type = \"pv\""
        echo "kernel = \"/guest/conch-pv-guest\""
        echo "memory = 32"
        echo "vcpus = 1"
        echo "extra = \"$2\""
    } >"/etc/xen/$1.cfg"
    echo "/etc/xen/$1.cfg"
}

# rig_xl_create WHAT NAME [xl create options] CONFIG: `xl create`, checked.
# Xen 4.17's xl now and then crashes (SIGSEGV, or an abort on a corrupted heap)
# on its way out, or in its domain-monitoring child, after the domain is fully
# created. Such a crash is logged and counted (figure xl_crashes_after_create);
# a create that leaves no domain, or a device model that is not running, still
# fails the scenario.
RIG_XL_CRASHES=0
rig_xl_create() {
    local what=$1 name=$2 status=0
    shift 2
    timeout 120 xl create "$@" >"/var/log/rig/xl-create-$name.log" 2>&1 || status=$?
    cat "/var/log/rig/xl-create-$name.log" >&3
    if [ "$status" != 0 ]; then
        local id model
        id=$(rig_domid "$name")
        model=$(xenstore-read "/local/domain/$id/image/device-model-pid" 2>/dev/null)
        if [ -n "$id" ] && { [ -z "$model" ] || [ -d "/proc/$model" ]; } &&
            { [ "$status" = 139 ] || [ "$status" = 134 ] ||
                grep -q "died due to fatal signal" "/var/log/rig/xl-create-$name.log"; }; then
            RIG_XL_CRASHES=$((RIG_XL_CRASHES + 1))
            rig_log "xl create $name: xl crashed (status $status) after creating d$id; the domain is there"
        else
            rig_fail "$what (xl create exited $status)"
        fi
    fi
    rig_log "ok: $what"
}

rig_domid() { xl domid "$1" 2>/dev/null; }
rig_guest_log() { echo "/var/log/xen/console/guest-$1.log"; }
