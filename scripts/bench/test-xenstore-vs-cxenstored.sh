#!/usr/bin/env bash
# Debian's test-xenstore against cxenstored and `conch xenstored`, side by side:
#
#   scripts/bench/test-xenstore-vs-cxenstored.sh [-i ITERATIONS] [-r ROUNDS] [-p PLACEMENT] [CONCH]
#
#   -i  test-xenstore's iterations (default 500)     -r  rounds, alternating daemons (default 3)
#   -p  where the processes run (default same):
#         same   client and daemon on CPU 0: the daemon's own cost decides
#         split  daemon on CPU 1, client on CPU 0: a cross-CPU wake-up per message
#         free   wherever the scheduler puts them
#
# Both daemons start fresh (cxenstored through cxenstored-without-xen.sh) and serve
# only their sockets. Prints each round's wall time and daemon CPU time, the best
# of the rounds for each and their ratio, then test-xenstore's per-test averages
# from each daemon's best round. Then the floor beneath both (read-round-trip.c): as
# many round trips as a test-xenstore run makes, against a server that does nothing,
# and one READ at a time against each daemon. Not a test and not run by CI
# (docs/TESTING.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
iterations=500 rounds=3 placement=same
while getopts i:r:p: option; do
    case $option in
    i) iterations=$OPTARG ;;
    r) rounds=$OPTARG ;;
    p) placement=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
conch=${1:-.build/release/conch}
case $placement in
same) daemon=(taskset -c 0) client=(taskset -c 0) server_cpu=(0) ;;
split) daemon=(taskset -c 1) client=(taskset -c 0) server_cpu=(1) ;;
free) daemon=() client=() server_cpu=() ;;
*) echo "placement: same, split or free" >&2; exit 2 ;;
esac
. "$here/cxenstored-without-xen.sh" --env

work=$(mktemp -d)
trap 'kill $cx $co 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"${daemon[@]}" "$here/cxenstored-without-xen.sh" "$work/cx" & cx=$!
"${daemon[@]}" "$conch" xenstored --socket "$work/co/socket" --run-dir "$work/co" --hypervisor simulated \
    >"$work/conch.log" 2>&1 & co=$!
for _ in $(seq 100); do [ -S "$work/cx/socket" ] && [ -S "$work/co/socket" ] && break; sleep 0.1; done
[ -S "$work/cx/socket" ] && [ -S "$work/co/socket" ] || { echo "a daemon did not start" >&2; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
writes() { awk '/^syscw/ {print $2}' "/proc/$1/io"; }
declare -A best best_round
echo "test-xenstore -i $iterations, $rounds rounds, placement $placement"
for round in $(seq "$rounds"); do
    for name in cxenstored conch; do
        if [ $name = cxenstored ]; then pid=$cx socket=$work/cx/socket; else pid=$co socket=$work/co/socket; fi
        before=$(ticks $pid) writes_before=$(writes $pid) start=$(date +%s%N)
        XENSTORED_PATH=$socket "${client[@]}" "$XEN_TOOLS/test-xenstore" -i "$iterations" >"$work/$name.$round" 2>&1 \
            || { echo "test-xenstore failed against $name: $(tail -n 3 "$work/$name.$round")" >&2; exit 1; }
        wall=$((($(date +%s%N) - start) / 1000000))
        cpu=$((($(ticks $pid) - before) * 1000 / $(getconf CLK_TCK)))
        # conch writes each reply with one write(2) here: its count is the run's requests.
        [ $name = conch ] && requests=$(($(writes $pid) - writes_before))
        printf 'round %d  %-10s  wall %5d ms  daemon CPU %5d ms\n' "$round" $name $wall $cpu
        if [ -z "${best[$name]:-}" ] || [ $wall -lt "${best[$name]}" ]; then best[$name]=$wall best_round[$name]=$round; fi
    done
done
awk -v a="${best[conch]}" -v b="${best[cxenstored]}" \
    'BEGIN { printf "best of %d: conch %d ms, cxenstored %d ms: conch / cxenstored = %.3f\n", '"$rounds"', a, b, a / b }'
echo
echo "| test | cxenstored avg (µs) | conch avg (µs) | conch / cxenstored |"
echo "|---|---|---|---|"
paste -d'\n' "$work/cxenstored.${best_round[cxenstored]}" "$work/conch.${best_round[conch]}" | awk '
    { split($0, halves, ":"); name = halves[1]; gsub(/ +$/, "", name)
      match($0, /avg: [0-9]+/); value = substr($0, RSTART + 5, RLENGTH - 5) / 1000 }
    NR % 2 == 1 { cx = value; next }
    { printf "| %s | %.1f | %.1f | %.2f |\n", name, cx, value, value / cx }'

compiler=$(command -v cc || command -v gcc || command -v clang) || { echo "no C compiler for the floor" >&2; exit 0; }
"$compiler" -O2 -o "$work/read-round-trip" "$here/read-round-trip.c"
echo
echo "The floor: $requests round trips (one test-xenstore run's requests), best of $rounds"
for name in floor cxenstored conch; do
    case $name in
    floor) arguments=(--floor "$requests" "${server_cpu[@]}") ;;
    cxenstored) arguments=("$work/cx/socket" "$requests") ;;
    conch) arguments=("$work/co/socket" "$requests") ;;
    esac
    fastest=
    for _ in $(seq "$rounds"); do
        line=$("${client[@]}" "$work/read-round-trip" "${arguments[@]}")
        milliseconds=$(echo "$line" | sed -E 's/.* in ([0-9]+) ms.*/\1/')
        if [ -z "$fastest" ] || [ "$milliseconds" -lt "$fastest" ]; then fastest=$milliseconds fastest_line=$line; fi
    done
    echo "  $fastest_line"
done
