#!/usr/bin/env python3
"""Plot and summarise bank-bench results.

    pip install matplotlib
    python3 examples/bank/Bench/plot.py run1.json [run2.json ...] -o bench.png [--table]

Draws transfers/s and p99 latency against the concurrency C, one line per wait mode. With several
runs (the same configuration run more than once on a noisy machine), each point is the median of
the runs and the bar spans their range. --table prints the same as a Markdown table on stdout.
"""
import argparse
import json
import statistics
import sys


def load(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def collect(runs):
    """{(wait, C): {"tps": [...], "p50": [...], "p99": [...], ...}} over the runs, latencies in ms."""
    points = {}
    for run in runs:
        for phase in run["phases"]:
            key = (phase["wait"], phase["concurrency"])
            point = points.setdefault(key, {})
            lat = phase["latency"]
            values = {
                "tps": phase["transfersPerSecond"],
                "p50": lat["p50Nanoseconds"] / 1e6,
                "p99": lat["p99Nanoseconds"] / 1e6,
                "p999": lat["p999Nanoseconds"] / 1e6,
                "max": lat["maxNanoseconds"] / 1e6,
                "floor_x": phase["p50OverFloor"],
                "aborted": phase["aborted"],
                "errors": sum(phase["errors"].values()),
            }
            if phase.get("coordinatorLogFsyncs") is not None and phase["committed"] > 0:
                values["log_fsyncs"] = phase["coordinatorLogFsyncs"] / phase["committed"]
            for process in phase["processes"]:
                role = process["role"]
                values["cpu:" + role] = process["cpuSecondsPerThousandTransfers"]
                if process.get("fsyncsPerTransfer") is not None:
                    values["fsync:" + role] = process["fsyncsPerTransfer"]
                if process.get("groupCommitsPerTransfer") is not None:
                    values["gc:" + role] = process["groupCommitsPerTransfer"]
                if role != "load generator":
                    values["rss:" + role] = process["peakRSSBytes"] / 2**20
            for name, value in values.items():
                point.setdefault(name, []).append(value)
    return points


def med(values):
    return statistics.median(values) if values else float("nan")


def cell(values, fmt):
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt + " ({}–{})").format(med(values), fmt.format(min(values)), fmt.format(max(values)))


def table(runs):
    points = collect(runs)
    out = []
    floors = [(r["floorsBefore"]["fsync"]["p50Nanoseconds"] / 1e6, r["floorsBefore"]["roundTrip"]["p50Nanoseconds"] / 1e6) for r in runs]
    out.append("runs: {}; fsync floor p50 {} ms; round-trip floor p50 {} ms".format(
        len(runs), cell([f for f, _ in floors], "{:.2f}"), cell([t for _, t in floors], "{:.3f}")))
    waits = sorted({w for w, _ in points}, key=lambda w: ["decision", "completion"].index(w) if w in ("decision", "completion") else 9)
    for wait in waits:
        out.append("")
        out.append("wait: {}".format(wait))
        out.append("")
        out.append("| C | transfers/s | p50 ms | p99 ms | p99.9 ms | max ms | p50 / floor | aborted | errors |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in sorted(c for w, c in points if w == wait):
            p = points[(wait, c)]
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                c, cell(p["tps"], "{:.0f}"), cell(p["p50"], "{:.2f}"), cell(p["p99"], "{:.2f}"),
                cell(p["p999"], "{:.2f}"), cell(p["max"], "{:.1f}"), cell(p["floor_x"], "{:.1f}×"),
                cell(p["aborted"], "{:.0f}"), cell(p["errors"], "{:.0f}")))
        roles = [k[4:] for k in points[(wait, min(c for w, c in points if w == wait))] if k.startswith("cpu:")]
        out.append("")
        header = ["C", "log fsyncs/transfer (coordinator)"] + ["{} fsyncs/transfer".format(r) for r in roles if r != "load generator"] \
            + ["{} group commits/transfer".format(r) for r in roles if r != "load generator"] \
            + ["{} CPU s/1k".format(r) for r in roles] + ["{} peak RSS MiB".format(r) for r in roles if r != "load generator"]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---:|" * len(header))
        for c in sorted(c for w, c in points if w == wait):
            p = points[(wait, c)]
            row = [str(c), cell(p.get("log_fsyncs", []), "{:.3f}")]
            row += [cell(p.get("fsync:" + r, []), "{:.3f}") for r in roles if r != "load generator"]
            row += [cell(p.get("gc:" + r, []), "{:.3f}") for r in roles if r != "load generator"]
            row += [cell(p.get("cpu:" + r, []), "{:.3f}") for r in roles]
            row += [cell(p.get("rss:" + r, []), "{:.0f}") for r in roles if r != "load generator"]
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def plot(runs, output):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = collect(runs)
    waits = sorted({w for w, _ in points})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for wait in waits:
        cs = sorted(c for w, c in points if w == wait)
        for axis, key, label in ((left, "tps", "transfers/s"), (right, "p99", "p99 ms")):
            meds = [med(points[(wait, c)][key]) for c in cs]
            lows = [m - min(points[(wait, c)][key]) for m, c in zip(meds, cs)]
            highs = [max(points[(wait, c)][key]) - m for m, c in zip(meds, cs)]
            axis.errorbar(cs, meds, yerr=[lows, highs], marker="o", capsize=3, label="wait: " + wait)
    machine = runs[0]["machine"]
    all_cs = sorted({c for _, c in points})
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(all_cs)
        axis.set_xticklabels([str(c) for c in all_cs])
        axis.set_xlabel("concurrent clients C")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    left.set_ylabel("committed transfers per second")
    left.set_title("Throughput")
    right.set_ylabel("p99 latency (ms)")
    right.set_yscale("log")
    right.set_title("p99 latency")
    floor_fsync = med([r["floorsBefore"]["fsync"]["p50Nanoseconds"] / 1e6 for r in runs])
    floor_rtt = med([r["floorsBefore"]["roundTrip"]["p50Nanoseconds"] / 1e6 for r in runs])
    right.axhline(2 * floor_fsync + 2 * floor_rtt, color="grey", linestyle="--", linewidth=1,
                  label="floor, decision (2 fsync + 2 RTT)")
    right.legend()
    others = [r["otherLoad"]["machineBusySeconds"] - r["otherLoad"]["benchmarkSeconds"] for r in runs if r.get("otherLoad")]
    walls = [r["otherLoad"]["wallSeconds"] for r in runs if r.get("otherLoad")]
    busy = " (other processes used {:.1f} cores on average)".format(sum(others) / sum(walls)) if walls else ""
    fig.suptitle("Arbiter bank transfers (2 participants), median and range of {} run(s): {} cores, {}{}".format(
        len(runs), machine["coreCount"], machine["cpuModel"], busy), fontsize=9)
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="bank-bench --json files")
    parser.add_argument("-o", "--output", help="the PNG to write")
    parser.add_argument("--table", action="store_true", help="print a Markdown table of medians and ranges")
    args = parser.parse_args()
    runs = load(args.files)
    if args.table or not args.output:
        print(table(runs))
    if args.output:
        plot(runs, args.output)
        print("wrote " + args.output, file=sys.stderr)


if __name__ == "__main__":
    main()
