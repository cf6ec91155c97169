#!/bin/sh
# Scenario `consoled`: conch consoled serves console 0 of a real Linux guest
# (Debian's 6.1 kernel: a legacy hvc_xen that ignores the connection flag), in
# place of xenconsoled, on top of conch xenstored.
#  - it maps the ring (grant 0, else the frame), binds the event channel, marks
#    the page CONNECTED, publishes the pty in console/tty and logs the output;
#  - Xen's own `xl console` attaches and a person logs in and types (rig-pty);
#  - `conch console` attaches too, history first;
#  - xl destroy: consoled lets the domain go;
#  - conch-pv-guest (Conch's Embedded Swift PV kernel): boot log, echo, and
#    power-off on a typed command and on its timeout.
. /rig/rig.sh
rig_dom0_up
lines=${RIG_BOOT_LINES:-200}

rig_start_conch_xenstored
rig_check "xen-init-dom0" xen-init-dom0
rig_start_conch_consoled

config=$(rig_guest_config g1 login)
sed -i "s/rig=login/rig=login lines=$lines/" "$config"
start=$(rig_now)
rig_xl_create "xl create g1" g1 "$config"
g1=$(rig_domid g1)
log=/var/log/xen/console/guest-g1.log
rig_wait 120 "g1's boot lines in conch consoled's log" grep -q "RIG-GUEST ready" "$log"
rig_figure create_to_ready_seconds "$(rig_elapsed "$start" "$(rig_now)")"
rig_check "every boot line, in order" test "$(rig_boot_lines "$log")" = "$lines"
rig_check "... in order" rig_boot_in_order "$log"
rig_figure boot_lines "$(rig_boot_lines "$log")"
tty=$(xenstore-read /local/domain/$g1/console/tty)
rig_check "console/tty names a pty ($tty)" sh -c "case '$tty' in /dev/pts/*) test -c '$tty';; *) false;; esac"
rig_check "the page is marked CONNECTED" test "$(conch console-flag g1)" = connected

# Xen's own client: log in and type.
cat >/tmp/login.script <<'SCRIPT'
send \r
expect login:
send root\r
expect #
send echo typed-$((6*7))\r
expect typed-42
send \x1d
SCRIPT
start=$(rig_now)
rig_check "xl console g1: log in and run a command" \
    sh -c 'rig-pty -t 60 xl console g1 </tmp/login.script >/var/log/rig/xl-console.log 2>&1'
rig_figure xl_console_session_seconds "$(rig_elapsed "$start" "$(rig_now)")"
rig_log "the xl console session, as the person saw it:"
tr -d '\r' </var/log/rig/xl-console.log | sed 's/^/  | /' >&3

# Conch's client, as a script would use it: history first, then a command.
echo 'echo via-conch-$((7*6))' | conch console g1 --linger 3 >/var/log/rig/conch-console.log 2>&1
rig_check "conch console g1 replays the boot history" grep -q "RIG-BOOT 1/$lines" /var/log/rig/conch-console.log
rig_check "conch console g1 runs a command" grep -q "via-conch-42" /var/log/rig/conch-console.log

# consoled's counters say it served the console.
conch stats --run-dir /run/conch --json >/var/log/rig/stats.json 2>&1
rig_check "conch stats lists console 0 of g1" grep -q "\"domid\":$g1" /var/log/rig/stats.json

rig_check "xl destroy g1" timeout 60 xl destroy g1
rig_wait 30 "consoled to let g1 go" sh -c "grep -q 'domain released.*domid=$g1\|domid=$g1.*domain released' /var/log/rig/conch-consoled.log"
rig_check "no xenconsoled ran" sh -c '! pidof xenconsoled'

# Conch's own PV kernel (Embedded Swift): its boot log, an echo, `poweroff`
# typed at its console, and a second one that powers off on its timeout.
rig_xl_create "xl create pv1 (conch-pv-guest)" pv1 "$(rig_pv_guest_config pv1 "lines=20")"
rig_xl_create "xl create pv2 (conch-pv-guest)" pv2 "$(rig_pv_guest_config pv2 "lines=5 timeout=5")"
rig_wait 30 "pv1's boot log" grep -q "RIG-BOOT-DONE 20" "$(rig_guest_log pv1)"
rig_check "pv1: every boot line, in order" test "$(rig_boot_lines "$(rig_guest_log pv1)")" = 20
printf 'hello from dom0\npoweroff\n' | conch console pv1 --linger 3 >/var/log/rig/pv-console.log 2>&1
rig_check "pv1 echoes a line typed at its console" grep -q "echo:hello from dom0" /var/log/rig/pv-console.log
rig_wait 30 "pv1 to power off when told" sh -c '! xl domid pv1'
rig_check "pv1 said so" grep -q "conch-pv-guest: powering off" "$(rig_guest_log pv1)"
rig_wait 60 "pv2 to power off on its 5 s timeout" sh -c '! xl domid pv2'
rig_check "pv2 said so" grep -q "conch-pv-guest: timed out, powering off" "$(rig_guest_log pv2)"
rig_pass
