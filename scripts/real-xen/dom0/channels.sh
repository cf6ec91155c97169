#!/bin/sh
# Scenario `channels`: PV channels of a real Linux guest without QEMU. The
# guest's xl.cfg names Conch's device model (device_model_override); libxl
# starts it as it would QEMU, it hands the channels to conch consoled, and
# consoled serves a socket channel and a pty channel as QEMU would.
#  - the guest (busybox init) finds its channels by name under
#    /sys/bus/xen/devices/console-* and says hello on each;
#  - dom0 answers: on the socket with `conch console --channel`, on the pty
#    directly;
#  - xl channel-list shows both connected; no QEMU runs at any point;
#  - consoled is killed (SIGKILL) and the guest writes a burst on the socket
#    channel meanwhile; consoled restarts and every line arrives, in order, and
#    the channel still carries dom0's lines to the guest;
#  - xl destroy stops the device model and consoled removes the socket;
#  - conch-pv-guest (Conch's Embedded Swift PV kernel) connects a channel itself
#    and answers on it.
# xl 4.17 gives a first channel devid 0, which libxl then drops ("Primary console
# has invalid configuration", fixed upstream in 2025): a dummy channel goes first.
. /rig/rig.sh
rig_dom0_up

rig_start_conch_xenstored
rig_check "xen-init-dom0" xen-init-dom0
rig_start_conch_consoled

config=$(rig_guest_config g1 channels \
    'device_model_override = "/usr/lib/conch/conch-device-model"' \
    'channel = [ "name=rig.dummy, connection=pty", "name=org.conch.sock, connection=socket, path=/run/rig.sock", "name=org.conch.pty, connection=pty" ]')
start=$(rig_now)
rig_xl_create "xl create g1 with two channels and Conch's device model" g1 "$config"
rig_figure xl_create_seconds "$(rig_elapsed "$start" "$(rig_now)")"
g1=$(rig_domid g1)
dm=$(xenstore-read /local/domain/$g1/image/device-model-pid)
rig_log "device model: pid $dm: $(tr '\0' ' ' </proc/$dm/cmdline)"
rig_check "the device model is Conch's" sh -c "tr '\0' ' ' </proc/$dm/cmdline | grep -q '^/usr/lib/conch/conch-device-model .*-xen-domid $g1 '"
rig_check "libxl saw it running" test "$(xenstore-read /local/domain/0/device-model/$g1/state)" = running
log=/var/log/xen/console/guest-g1.log

# The socket channel: the guest's hello waits in its ring until dom0 connects.
rig_wait 60 "consoled's socket for org.conch.sock" test -S /run/rig.sock
rig_wait 120 "g1 to find org.conch.sock" grep -q "RIG-GUEST channel org.conch.sock=\[/dev/hvc" "$log"
echo "hello guest, from dom0's socket" | conch console g1 --channel org.conch.sock --linger 3 \
    >/var/log/rig/socket-channel.log 2>&1
rig_check "dom0 read the guest's hello on the socket" grep -q "hello from g1 on org.conch.sock" /var/log/rig/socket-channel.log
rig_wait 30 "the guest to read dom0's answer on the socket" \
    grep -q "RIG-GUEST org.conch.sock got=\[hello guest, from dom0's socket\]" "$log"

# The pty channel: its pty is in the frontend's tty node, as QEMU would publish it.
rig_wait 60 "g1 to find org.conch.pty" grep -q "RIG-GUEST channel org.conch.pty=\[/dev/hvc" "$log"
devid=$(for d in 1 2 3; do
    [ "$(xenstore-read /local/domain/0/backend/console/$g1/$d/name 2>/dev/null)" = org.conch.pty ] && echo $d
done)
tty=$(xenstore-read /local/domain/$g1/device/console/$devid/tty)
rig_check "the pty channel's tty is a pty ($tty)" sh -c "case '$tty' in /dev/pts/*) test -c '$tty';; *) false;; esac"
stty -F "$tty" raw -echo
timeout 20 head -n 1 "$tty" >/var/log/rig/pty-channel.log 2>&1 &
reader=$!
echo "hello guest, from dom0's pty" >"$tty"
wait $reader
rig_check "dom0 read the guest's hello on the pty" grep -q "hello from g1 on org.conch.pty" /var/log/rig/pty-channel.log
rig_wait 30 "the guest to read dom0's answer on the pty" \
    grep -q "RIG-GUEST org.conch.pty got=\[hello guest, from dom0's pty\]" "$log"

# xl's view: both channels connected (state 4).
xl channel-list g1 >/var/log/rig/channel-list.txt 2>&1
cat /var/log/rig/channel-list.txt
rig_check "xl channel-list shows two channels connected" \
    test "$(awk 'NR > 1 && $3 == 4' /var/log/rig/channel-list.txt | wc -l)" = 2
rig_check "no QEMU process" sh -c '! ps | grep -v grep | grep -qi qemu'

# consoled dies (SIGKILL) and the guest writes on: its lines wait in the ring,
# the socket stays where it was, and a restarted consoled delivers every line.
kill -KILL "$RIG_CONSOLED_PID"
wait "$RIG_CONSOLED_PID" 2>/dev/null
burst=${RIG_BURST_LINES:-300}
xenstore-write "/local/domain/$g1/data/rig-burst" "$burst"
# (consoled is gone, so nothing in dom0 can see the guest now: give it time to fill the ring.)
sleep 3
rig_check "the socket is still there with consoled gone" test -S /run/rig.sock
rig_start_conch_consoled
(echo "after the restart" | conch console g1 --channel org.conch.sock --linger 5 \
    >/var/log/rig/socket-restart.log 2>&1) &
rig_wait 120 "the burst's end through the restarted consoled" grep -q "RIG-CHAN-DONE" /var/log/rig/socket-restart.log
received=$(grep -ac '^RIG-CHAN [0-9]' /var/log/rig/socket-restart.log)
rig_figure burst_lines_written "$burst"
rig_figure burst_lines_received "$received"
if [ "$received" != "$burst" ]; then
    rig_log "burst lines missing: $(grep -a '^RIG-CHAN [0-9]' /var/log/rig/socket-restart.log | sed 's|^RIG-CHAN \([0-9]*\)/.*|\1|' |
        awk -v n="$burst" '{ seen[$1] = 1 } END { for (i = 1; i <= n; i++) if (!(i in seen)) printf "%d ", i }')"
    rig_log "lines that are not whole burst lines:"
    grep -anv '^RIG-CHAN [0-9]*/[0-9]*$' /var/log/rig/socket-restart.log | head -n 10 | od -c | head -n 20 >&3
fi
rig_check "every line of the burst arrived ($received of $burst)" test "$received" = "$burst"
rig_check "... in order" sh -c "grep -a '^RIG-CHAN [0-9]' /var/log/rig/socket-restart.log | sed 's|^RIG-CHAN \([0-9]*\)/.*|\1|' | awk '\$1 != NR { exit 1 }'"
rig_wait 30 "the guest's echo after the restart" grep -q "echo:after the restart" /var/log/rig/socket-restart.log

rig_check "xl destroy g1" timeout 60 xl destroy g1
rig_wait 30 "the device model to stop" sh -c "! test -e /proc/$dm"
rig_wait 30 "consoled to remove the socket" sh -c '! test -e /run/rig.sock'

# conch-pv-guest's channel, the seed's provisioning example: the Embedded Swift
# kernel does the xenbus handshake itself (its ring granted to dom0, an unbound
# port), says hello naming the channel, and answers dom0's line; no QEMU.
config=$(rig_pv_guest_config pv "lines=3 channel=1")
cat >>"$config" <<'CFG'
device_model_override = "/usr/lib/conch/conch-device-model"
channel = [ "name=rig.dummy, connection=pty", "name=org.conch.provision, connection=socket, path=/run/provision.sock" ]
CFG
rig_xl_create "xl create pv (conch-pv-guest with a channel)" pv "$config"
rig_wait 60 "pv to connect its channel" grep -q "conch-pv-guest: channel org.conch.provision connected" "$(rig_guest_log pv)"
echo "provision: hostname=pv-1" | conch console pv --channel org.conch.provision --linger 3 >/var/log/rig/provision.log 2>&1
rig_check "pv said hello on its channel" grep -q "hello from conch-pv-guest on org.conch.provision" /var/log/rig/provision.log
rig_check "pv answered dom0's line" grep -q "echo:provision: hostname=pv-1" /var/log/rig/provision.log
rig_check "no QEMU process" sh -c '! ps | grep -v grep | grep -qi qemu'
rig_check "xl destroy pv" timeout 60 xl destroy pv
rig_pass
