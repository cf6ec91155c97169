#!/usr/bin/env bash
# Where an echo round trip's microseconds go: runs `conch bench console`'s echo
# through the whole stack, records the scheduler with `perf sched` for a second of
# it, and prints, for each process on the path, how often it is woken per round
# trip, how long it waits for a CPU once woken, and how long it runs.
#
#   scripts/bench/echo-wakeups.sh [path/to/conch]     (root; perf with sched tracepoints)
#
# Not a test and not run by CI: a tool for reading the path.
set -euo pipefail
conch=${1:-.build/release/conch}
command -v perf >/dev/null || { echo "echo-wakeups: needs perf (Debian: linux-perf)" >&2; exit 2; }
work=$(mktemp -d); echo "trace in $work" >&2
trap 'kill $bench 2>/dev/null || true; [ -n "${KEEP_TRACE:-}" ] || rm -rf "$work"' EXIT

"$conch" bench console --mebibytes 1 --echoes 60000 --pairs 1 >"$work/bench.out" 2>&1 &
bench=$!
# Each pair measures the raw eventfd ping-pong (its peer is `conch bench-peer
# raw-eventfd`) just before the echoes: record once that peer has come and gone.
for _ in $(seq 600); do pgrep -f 'bench-peer raw-eventfd' >/dev/null && break; sleep 0.05; done
while pgrep -f 'bench-peer raw-eventfd' >/dev/null; do sleep 0.01; done
sleep 0.2
roles() {
  echo "consoled $(pgrep -f "conch consoled --run-dir" | head -1)"
  echo "keeper $(pgrep -f 'consoled-keeper' | head -1)"
  echo "bench $bench"
  for kernel in $(pgrep -f 'conch guest-kernel'); do echo "guest-kernel $kernel"; done
  for program in $(pgrep -x cat); do echo "guest-cat $program"; done
}
roles >"$work/roles"
perf sched record -a -o "$work/sched.data" sleep 1 >/dev/null 2>&1
perf sched timehist -i "$work/sched.data" >"$work/timehist" 2>/dev/null
wait "$bench" || true
grep -E "^echo|^pair" "$work/bench.out" || true

python3 - "$work/roles" "$work/timehist" "$work/bench.out" <<'PY'
import collections, re, sys
roles = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 2:
        roles[parts[1]] = parts[0]
p50 = None
for line in open(sys.argv[3]):
    match = re.search(r"echo 64 B p50 ([\d.]+)", line)
    if match:
        p50 = float(match.group(1))
row = re.compile(r"\s*([\d.]+)\s+\[(\d+)\]\s+(.*?)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
stats = collections.defaultdict(lambda: [0, 0.0, 0.0])
first = last = None
for line in open(sys.argv[2]):
    match = row.match(line)
    if not match:
        continue
    time = float(match.group(1))
    first = time if first is None else first
    last = time
    name, tid, pid = match.group(3).strip(), match.group(4), match.group(5) or match.group(4)
    role = roles.get(pid) or ("kworker (pty flip buffers)" if name.startswith("kworker/u") else None)
    if role is None:
        continue
    entry = stats[role]
    entry[0] += 1
    entry[1] += float(match.group(7)) * 1000
    entry[2] += float(match.group(8)) * 1000
span = (last - first) if first is not None and last is not None else 0
if not span or not p50:
    sys.exit("echo-wakeups: no trace or no echo figure")
trips = span * 1e6 / p50
print(f"\n{trips:.0f} round trips in {span:.2f} s (p50 {p50} µs); per round trip:")
print(f"{'process':28s} {'wake-ups':>9s} {'wait for CPU µs':>16s} {'runs µs':>8s} {'CPU µs':>8s}")
for role, (count, delay, run) in sorted(stats.items(), key=lambda item: -item[1][0]):
    print(f"{role:28s} {count / trips:9.2f} {delay / count:16.1f} {run / count:8.1f} {run / trips:8.1f}")
PY
