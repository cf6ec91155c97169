#!/bin/sh
# Scenario `matrix`: the seed's compatibility matrix on real Xen 4.17.
#   frontends: Debian's Linux 6.1 (legacy hvc_xen: ignores the flag),
#              conch-pv-guest (the new frontend: holds output while DISCONNECTED),
#              conch-pv-guest frontend=linux71 (Linux 7.1: drops while DISCONNECTED)
#   backends:  Xen's xenconsoled (flag-unaware), conch consoled
#   timing:    running  - the backend serves the console from creation
#              late     - the backend stops (orderly) after `xl create -p` and
#                         starts again 20 s after `xl unpause`: a restart, so
#                         conch consoled leaves the page CONNECTED and the ring
#                         waits for it
#              marked   - the page is marked DISCONNECTED before unpause (Xen
#                         4.21's builder; `conch console-flag` here): conch
#                         consoled, restarted after the marking, marks it
#                         CONNECTED when it serves it (the guests are unpaused
#                         once it has); xenconsoled never does
# Each cell: how long the boot took from unpause (a stall shows here), the
# guest's own boot time, boot lines that reached the backend's log, in order,
# and lost. The scenario fails where a cell contradicts what Conch promises:
#   every frontend + conch consoled: nothing lost, in every timing (Linux 7.1's
#   drops while DISCONNECTED, and a restarting consoled never says so);
#   new frontend + conch consoled, running or marked: no stall either;
#   new frontend + xenconsoled, page as 4.17 leaves it: behaves as connected.
# `xl create` waits 10 s for console 0's tty on 4.17, so a backend is always up
# at creation; "late" is a backend gone between create and boot.
. /rig/rig.sh
rig_dom0_up
lines=${RIG_BOOT_LINES:-200}
late=${RIG_LATE_SECONDS:-20}

rig_start_conch_xenstored
rig_check "xen-init-dom0" xen-init-dom0

start_backend() {
    case $1 in
    xenconsoled)
        rig_start_xenconsoled
        rig_wait 30 "xenconsoled" pidof xenconsoled
        ;;
    consoled) rig_start_conch_consoled ;;
    esac
}

guest_config() { # NAME FRONTEND
    local name=$1 frontend=$2
    if [ "$frontend" = legacy ]; then
        config=$(rig_guest_config "$name" late)
        sed -i "s/rig=late/rig=late lines=$lines/" "$config"
    else
        config=$(rig_pv_guest_config "$name" "lines=$lines frontend=$frontend timeout=600")
    fi
    echo "$config"
}

cells=""
table=""
failures=""
# run_group BACKEND TIMING: the three frontends at once.
run_group() {
    local backend=$1 timing=$2 frontend name
    rig_log "group: $backend, $timing"
    start_backend "$backend"
    for frontend in legacy new linux71; do
        name="$frontend-${backend%d}-$timing"
        rig_xl_create "xl create -p $name" "$name" -p "$(guest_config "$name" "$frontend")"
    done
    case $timing in
    late) rig_stop_consoled ;;
    marked)
        if [ "$backend" = consoled ]; then rig_stop_consoled; fi
        for frontend in legacy new linux71; do
            rig_check "mark $frontend DISCONNECTED" conch console-flag "$frontend-${backend%d}-$timing" disconnected
        done
        if [ "$backend" = consoled ]; then
            start_backend consoled
            # Unpause once consoled serves them again, as a 4.21 host would see it.
            for frontend in legacy new linux71; do
                rig_wait 60 "consoled to mark $frontend CONNECTED again" \
                    sh -c "test \"\$(conch console-flag $frontend-${backend%d}-$timing)\" = connected"
            done
        fi
        ;;
    esac
    local unpaused
    unpaused=$(rig_now)
    for frontend in legacy new linux71; do xl unpause "$frontend-${backend%d}-$timing"; done
    local backend_at=$unpaused
    # Boot-done times, polled for all three (the guests write data/rig-boot-done).
    local pending="legacy new linux71" waited=0 now id
    local done_legacy="" done_new="" done_linux71=""
    while [ -n "$pending" ] && [ "$waited" -lt 600 ]; do
        if [ "$timing" = late ] && [ "$backend_at" = "$unpaused" ] &&
            [ "$(rig_elapsed "$unpaused" "$(rig_now)" | cut -d. -f1)" -ge "$late" ]; then
            start_backend "$backend"
            backend_at=$(rig_now)
        fi
        local still=""
        for frontend in $pending; do
            id=$(rig_domid "$frontend-${backend%d}-$timing")
            if xenstore-exists "/local/domain/$id/data/rig-boot-done" 2>/dev/null; then
                eval "done_$frontend=$(rig_elapsed "$unpaused" "$(rig_now)")"
            else
                still="$still $frontend"
            fi
        done
        pending=$still
        sleep 0.2
        waited=$((waited + 1))
    done
    if [ "$timing" = late ] && [ "$backend_at" = "$unpaused" ]; then
        sleep "$late"
        start_backend "$backend"
    fi
    # Give the backend time to drain the rings and guests to replay.
    for frontend in legacy new linux71; do
        name="$frontend-${backend%d}-$timing"
        i=0
        while [ $i -lt 75 ] && ! grep -q "RIG-BOOT-DONE" "$(rig_guest_log "$name")" 2>/dev/null; do
            sleep 0.2
            i=$((i + 1))
        done
    done
    sleep 1
    for frontend in legacy new linux71; do
        name="$frontend-${backend%d}-$timing"
        id=$(rig_domid "$name")
        log=$(rig_guest_log "$name")
        logged=$(rig_boot_lines "$log")
        order=yes
        rig_boot_in_order "$log" || order=no
        eval "boot=\${done_$frontend:-null}"
        guest_ms=$(xenstore-read "/local/domain/$id/data/rig-boot-ms" 2>/dev/null || echo null)
        # What Xen answered the kernel's first console_io (0: none tried; -1: EPERM).
        console_io=$(xenstore-read "/local/domain/$id/data/rig-console-io" 2>/dev/null || echo null)
        [ -n "$boot" ] || boot=null
        if [ "$boot" = null ]; then
            # A boot that never finished: say what the guest and its backend looked like.
            rig_log "$name (d$id) never reported its boot: flag $(conch console-flag "$name" 2>&1)," \
                "tty $(xenstore-read "/local/domain/$id/console/tty" 2>&1); xl list:"
            xl list "$name" >&3 2>&1
            xenstore-ls -f "/local/domain/$id/data" >&3 2>&1
            tail -n 20 /var/log/rig/conch-consoled.log /var/log/rig/xenconsoled.log >&3 2>&1
        fi
        lost=$((lines - logged))
        cell="{\"frontend\":\"$frontend\",\"backend\":\"$backend\",\"timing\":\"$timing\",\"boot_seconds\":$boot,\"guest_boot_ms\":$guest_ms,\"console_io\":$console_io,\"lines_logged\":$logged,\"lost\":$lost,\"in_order\":\"$order\"}"
        cells="${cells:+$cells,}$cell"
        row=$(printf '%-8s %-12s %-8s %9s %9s %7s %5s %5s' "$frontend" "$backend" "$timing" "$boot" "$guest_ms" "$logged" "$lost" "$order")
        table="$table
$row"
        rig_log "cell: $row"
        # The seed's promises.
        verdict=""
        stalled=$(awk -v b="$boot" 'BEGIN{ print (b == "null" || b + 0 >= 15) ? "yes" : "no" }')
        case "$backend" in
        consoled)
            [ "$lost" = 0 ] && [ "$order" = yes ] || verdict="the $frontend frontend lost lines on conch consoled"
            ;;
        esac
        case "$frontend/$backend/$timing" in
        new/consoled/running | new/consoled/marked)
            [ "$stalled" = no ] || verdict="$verdict; the new frontend stalled on conch consoled"
            ;;
        new/xenconsoled/running)
            [ "$lost" = 0 ] && [ "$order" = yes ] && [ "$stalled" = no ] || verdict="the new frontend did not behave as connected on xenconsoled"
            ;;
        esac
        [ -z "$verdict" ] || failures="$failures; $name: $verdict"
        timeout 60 xl destroy "$name"
    done
    rig_stop_consoled
}

for backend in xenconsoled consoled; do
    for timing in running late marked; do
        run_group "$backend" "$timing"
    done
done

rig_log "the matrix ($lines boot lines; boot = unpause to the guest's boot-done, s; guest = its own count, ms):"
printf '%-8s %-12s %-8s %9s %9s %7s %5s %5s\n' frontend backend timing boot guest logged lost order >&3
echo "$table" | sed '/^$/d' >&3
rig_figure boot_lines "$lines"
rig_figure late_seconds "$late"
rig_figure cells "[$cells]"
[ -z "$failures" ] || rig_fail "the seed's promise broken:${failures#;}"
rig_pass
