#!/bin/sh
# Scenario `late-backend`: guests boot while no console backend runs.
# On Xen 4.17 `xl create` itself waits (10 s) for console 0's tty, so a guest can
# only be created with a backend up; this is the backend that goes away after
# that — a crash, or an upgrade — and comes back while the guests boot:
#  - g1 and g2 are created paused, conch consoled serves them, then dies (SIGKILL:
#    the pages stay CONNECTED);
#  - g2's page is marked DISCONNECTED before it runs, as Xen 4.21's builder marks
#    every new page (`conch console-flag`, the step a 4.17 host runs between
#    `xl create -p` and `xl unpause`);
#  - both run Debian's legacy Linux frontend: their boot output fills the 2 KiB
#    ring and the boot stalls (the seed's problem: the guest cannot tell nobody
#    listens);
#  - when consoled starts again, every line arrives, in order, none lost, the
#    boots finish, and consoled marks g2's page CONNECTED.
. /rig/rig.sh
rig_dom0_up
lines=${RIG_BOOT_LINES:-400}
stall=${RIG_STALL_SECONDS:-20}

rig_start_conch_xenstored
rig_check "xen-init-dom0" xen-init-dom0
rig_start_conch_consoled
for guest in g1 g2; do
    config=$(rig_guest_config $guest late)
    sed -i "s/rig=late/rig=late lines=$lines/" "$config"
    rig_xl_create "xl create -p $guest" "$guest" -p "$config"
done
rig_check "consoled serves g2 and marked it CONNECTED" test "$(conch console-flag g2)" = connected
kill -KILL "$RIG_CONSOLED_PID"
wait "$RIG_CONSOLED_PID" 2>/dev/null
rig_log "conch consoled killed (SIGKILL)"
rig_check "g2's page still reads CONNECTED after the crash" test "$(conch console-flag g2)" = connected
rig_check "conch console-flag g2 disconnected" conch console-flag g2 disconnected
rig_check "g2's page reads DISCONNECTED" test "$(conch console-flag g2)" = disconnected
rig_check "xl unpause g1" xl unpause g1
rig_check "xl unpause g2" xl unpause g2

# Nobody serves the rings: the legacy guests' boots stall on a full ring.
sleep "$stall"
for guest in g1 g2; do
    id=$(rig_domid $guest)
    rig_check "$guest's boot is stalled after ${stall}s" sh -c "! xenstore-exists /local/domain/$id/data/rig-boot-done"
    rig_figure "${guest}_boot_lines_logged_while_stopped" "$(rig_boot_lines "$(rig_guest_log $guest)")"
done
rig_figure stalled_seconds_at_least "$stall"

start=$(rig_now)
rig_start_conch_consoled
for guest in g1 g2; do
    id=$(rig_domid $guest)
    rig_wait 180 "$guest's boot to finish once consoled serves it" xenstore-exists /local/domain/$id/data/rig-boot-done
done
rig_figure consoled_start_to_boots_done_seconds "$(rig_elapsed "$start" "$(rig_now)")"
for guest in g1 g2; do
    log=$(rig_guest_log $guest)
    rig_wait 30 "$guest's last boot line in the log" grep -q "RIG-BOOT-DONE" "$log"
    count=$(rig_boot_lines "$log")
    rig_figure "${guest}_boot_lines_expected" "$lines"
    rig_figure "${guest}_boot_lines_logged" "$count"
    rig_check "$guest: all $lines boot lines arrived ($count)" test "$count" = "$lines"
    rig_check "$guest: in order" rig_boot_in_order "$log"
done
rig_check "consoled marked g2 CONNECTED again" test "$(conch console-flag g2)" = connected
rig_check "xl destroy g1" timeout 60 xl destroy g1
rig_check "xl destroy g2" timeout 60 xl destroy g2
rig_pass
