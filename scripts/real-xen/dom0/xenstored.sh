#!/bin/sh
# Scenario `xenstored`: conch xenstored as the host's xenstore daemon on real Xen.
#  1. conch xenstored as the host's xenstore from boot: xen-init-dom0, Xen's
#     xenconsoled, `xl create` of a PV domU with a vif (dom0's netback and the
#     guest's netfront meet through xenstore), `xl list`, the guest reading its
#     own name over its ring, `xl shutdown`, a second guest and `xl destroy`;
#     each domain's tree goes with it.
#  2. Side by side, same boot: Debian's test-xenstore against cxenstored and
#     against conch xenstored, alternating (figures: seconds each, the ratio).
#  3. `conch bench xenstore --against` cxenstored's socket: each operation's
#     p50 on both daemons, in interleaved pairs, and the scale figures at sizes
#     TCG can carry (--watchers 100 --nodes 1000 --idle-connections 100; the
#     full sizes are measured without Xen, scripts/bench/cxenstored-without-xen.sh).
. /rig/rig.sh
rig_dom0_up

iterations=${RIG_TEST_XENSTORE_ITERATIONS:-50}
against_operations=${RIG_BENCH_AGAINST_OPERATIONS:-200}
rounds=${RIG_TEST_XENSTORE_ROUNDS:-3}

# --- 1. conch xenstored as the host's xenstore ----------------------------
# The first xenstored dom0's kernel meets: its xenbus (and netback's watches)
# live on conch from boot on.
rig_start_conch_xenstored
rig_check "xen-init-dom0 through conch xenstored" xen-init-dom0
rig_check "dom0's name is Domain-0" test "$(xenstore-read /local/domain/0/name)" = Domain-0
# The hypervisor's console ring through Conch's dom0 backend (libxenctrl), as xl dmesg.
rig_check "conch dmesg reads Xen's console ring" sh -c 'conch dmesg | grep -q "Xen version 4.17"'
rig_start_xenconsoled

# A vif whose hotplug script only reports success: the point is the xenbus
# handshake between dom0's netback and the guest's netfront, not networking.
printf '#!/bin/sh\nxenstore-write "$XENBUS_PATH/hotplug-status" connected\n' >/etc/xen/vif-rig
chmod 0755 /etc/xen/vif-rig

config=$(rig_guest_config g1 xenstored 'vif = [ "script=/etc/xen/vif-rig" ]')
start=$(rig_now)
rig_xl_create "xl create g1" g1 "$config"
rig_figure xl_create_seconds "$(rig_elapsed "$start" "$(rig_now)")"
rig_check "xl list shows g1" sh -c 'xl list | grep -q "^g1 "'
g1=$(rig_domid g1)
rig_log "g1 is domain $g1"
log=$(rig_guest_log g1)
rig_wait 120 "g1 to boot and report" grep -q "RIG-GUEST ready" "$log"
rig_figure guest_ready_seconds "$(rig_elapsed "$start" "$(rig_now)")"
rig_check "g1 read its own name over its xenstore ring" grep -q "RIG-GUEST name=\[g1\]" "$log"
rig_check "g1 read its own domid" grep -q "RIG-GUEST domid=\[$g1\]" "$log"
rig_check "g1's xenbus enumerated its vif" grep -q "RIG-GUEST devices=.*vif-0" "$log"
rig_check "g1's netfront reached Connected (4)" grep -q "RIG-GUEST vif-state=\[4\]" "$log"
rig_check "g1's netfront is eth0" grep -q "RIG-GUEST netfront=eth0" "$log"
rig_wait 30 "the vif's backend (dom0's netback) to reach Connected (4)" \
    sh -c "test \"\$(xenstore-read /local/domain/0/backend/vif/$g1/0/state)\" = 4"
rig_log "ok: the vif's backend reached Connected (4)"
rig_check "the guest's tree is in the store" xenstore-exists /local/domain/$g1/device/vif/0

start=$(rig_now)
rig_check "xl shutdown -w g1" timeout 60 xl shutdown -w g1
rig_figure xl_shutdown_seconds "$(rig_elapsed "$start" "$(rig_now)")"
rig_wait 30 "g1 to leave xl list" sh -c '! xl list | grep -q "^g1 "'
rig_wait 30 "g1's tree to be released" sh -c "! xenstore-exists /local/domain/$g1"
rig_check "g1's backend tree went with it" sh -c "! xenstore-exists /local/domain/0/backend/vif/$g1"

config=$(rig_guest_config g2 xenstored)
rig_xl_create "xl create g2" g2 "$config"
g2=$(rig_domid g2)
rig_wait 120 "g2 to boot and report" grep -q "RIG-GUEST ready" "$(rig_guest_log g2)"
rig_check "g2 read its own name" grep -q "RIG-GUEST name=\[g2\]" "$(rig_guest_log g2)"
rig_check "xl destroy g2" timeout 60 xl destroy g2
rig_wait 30 "g2's tree to be released" sh -c "! xenstore-exists /local/domain/$g2"
rig_check "xl list shows only Domain-0" test "$(xl list | tail -n +2 | wc -l)" = 1
# conch xenstored logs each release; a domain's watches and connection go with it.
released() { grep 'domain released' /var/log/rig/conch-xenstored.log | grep -q "domid=$1\b"; }
rig_check "conch xenstored released g1" released "$g1"
rig_check "conch xenstored released g2" released "$g2"
rig_check "conch xenstored is still serving" xenstore-read /local/domain/0/name

# --- 2. test-xenstore, cxenstored vs conch, alternating ---------------------
# With the guests gone, the host's xenstored gives way to one daemon at a time,
# each from an empty store. A first round of each warms QEMU's translation
# cache and is not counted.
rig_stop_xenstored
run_test_xenstore() {
    local start end
    rig_start_bench_xenstored "$1"
    start=$(rig_now)
    test-xenstore -i "$iterations" >/var/log/rig/test-xenstore-$1.log 2>&1 \
        || rig_fail "test-xenstore failed against $1: $(tail -n 3 /var/log/rig/test-xenstore-$1.log)"
    end=$(rig_now)
    rig_stop_xenstored "$RIG_BENCH_PID"
    grep -q 'failed' /var/log/rig/test-xenstore-$1.log && rig_fail "a test-xenstore test failed against $1"
    rig_elapsed "$start" "$end"
}
if [ "$rounds" -gt 0 ]; then
    run_test_xenstore cxenstored >/dev/null
    run_test_xenstore conch >/dev/null
    cx_times="" conch_times=""
    round=1
    while [ $round -le $rounds ]; do
        cx_times="$cx_times $(run_test_xenstore cxenstored)"
        conch_times="$conch_times $(run_test_xenstore conch)"
        rig_log "round $round: cxenstored ${cx_times##* }s, conch ${conch_times##* }s"
        round=$((round + 1))
    done
    echo "----- test-xenstore against conch (last round)"
    cat /var/log/rig/test-xenstore-conch.log
    median() { echo "$@" | tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
    cx=$(median $cx_times)
    co=$(median $conch_times)
    rig_figure test_xenstore_iterations "$iterations"
    rig_figure test_xenstore_cxenstored_seconds "[$(echo $cx_times | tr ' ' ',')]"
    rig_figure test_xenstore_conch_seconds "[$(echo $conch_times | tr ' ' ',')]"
    rig_figure test_xenstore_ratio "$(awk -v a="$co" -v b="$cx" 'BEGIN{printf "%.2f", a/b}')"
fi

# --- 3. conch bench xenstore --against cxenstored ----------------------------
# The bench starts its own conch xenstored on a scratch socket and measures the
# same operations on both, cxenstored first in every pair.
if [ "$against_operations" -gt 0 ]; then
    rig_start_bench_xenstored cxenstored
    conch bench xenstore --against /run/xenstored/socket --operations "$against_operations" --pairs 3 \
        --scale --watchers 100 --nodes 1000 --idle-connections 100 --json \
        >/var/log/rig/bench-against.json 2>/var/log/rig/bench-against.err \
        || rig_fail "bench xenstore --against cxenstored failed: $(tail -n 3 /var/log/rig/bench-against.err)"
    rig_stop_xenstored "$RIG_BENCH_PID"
    rig_check "the comparison names every operation" grep -q '"tx_rmw"' /var/log/rig/bench-against.json
    rig_check "the comparison has the scale figures" grep -q '"watch_events_per_s"' /var/log/rig/bench-against.json
    rig_check "the comparison has writes beside idle connections" \
        grep -q '"writes_beside_idle_per_s"' /var/log/rig/bench-against.json
    rig_figure bench_xenstore_against_cxenstored "$(cat /var/log/rig/bench-against.json)"
fi
rig_pass
