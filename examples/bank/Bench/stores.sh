#!/bin/bash
# The coordinator's decision store compared in one run: bank-bench back to back on SQLite (one
# coordinator), on a shared PostgreSQL with one coordinator, and with three; then one table.
#
#   swift build -c release && examples/bank/Bench/stores.sh
#
# Environment: BIN (default .build/release), CONCURRENCY (1,16,64), DURATION (10 s per phase),
# OUT (where the JSON reports go; a new temporary directory by default). The PostgreSQL is a
# throwaway one bank-bench starts (Debian's postgresql must be installed; run as root or as a user
# that may run initdb).
set -euo pipefail
BIN=${BIN:-.build/release}
OUT=${OUT:-$(mktemp -d -t arbiter-stores-XXXXXX)}
mkdir -p "$OUT"
ARGS=(--wait decision --concurrency "${CONCURRENCY:-1,16,64}" --duration "${DURATION:-10}" --warmup 3
      --skeleton-samples 0 --no-perf)
"$BIN/bank-bench" "${ARGS[@]}" --json "$OUT/sqlite.json"
"$BIN/bank-bench" "${ARGS[@]}" --store postgres --json "$OUT/postgres-1.json"
"$BIN/bank-bench" "${ARGS[@]}" --store postgres --coordinators 3 --json "$OUT/postgres-3.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = [("SQLite, 1 coordinator", "sqlite"), ("PostgreSQL, 1 coordinator", "postgres-1"), ("PostgreSQL, 3 coordinators", "postgres-3")]
phases = {}
for label, name in runs:
    report = json.load(open(f"{out}/{name}.json"))
    for phase in report["phases"]:
        phases.setdefault(phase["concurrency"], {})[label] = phase
print(f"\nbank-bench, wait: decision, one run (reports in {out})\n")
print("| C | " + " | ".join(f"{label} tx/s | p50 ms | p99 ms" for label, _ in runs) + " |")
print("|---:|" + "---:|---:|---:|" * len(runs))
for c in sorted(phases):
    cells = []
    for label, _ in runs:
        phase = phases[c].get(label)
        if phase is None:
            cells += ["–", "–", "–"]
            continue
        cells += [f"{phase['transfersPerSecond']:.0f}", f"{phase['latency']['p50Nanoseconds'] / 1e6:.1f}",
                  f"{phase['latency']['p99Nanoseconds'] / 1e6:.1f}"]
    print(f"| {c} | " + " | ".join(cells) + " |")
PY
