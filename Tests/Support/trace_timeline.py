#!/usr/bin/env python3
"""Draws one trace's spans, as otlp_receiver.py wrote them, as a timeline (SVG): one row per span,
children under their parent, coloured by the process that exported it, with its duration.

    python3 Tests/Support/trace_timeline.py spans.jsonl TRACE_ID trace.svg
"""
import json
import sys
from html import escape

COLOURS = ["#3b6ea5", "#c0702d", "#4f8f4a", "#8a4f9e", "#a83f4f"]
ROW, LEFT, WIDTH, TOP = 24, 300, 640, 46


def main(path, trace_id, out):
    spans = [s for s in map(json.loads, open(path)) if s["traceId"] == trace_id]
    if not spans:
        sys.exit(f"no span of trace {trace_id} in {path}")
    by_id = {s["spanId"]: s for s in spans}
    children = {}
    for span in spans:
        parent = span["parentSpanId"] if span["parentSpanId"] in by_id else None
        children.setdefault(parent, []).append(span)
    ordered = []

    def visit(parent, depth):
        for span in sorted(children.get(parent, []), key=lambda s: (s["start"], s["name"])):
            ordered.append((span, depth))
            visit(span["spanId"], depth + 1)

    visit(None, 0)
    start = min(s["start"] for s in spans)
    end = max(s["end"] for s in spans)
    scale = WIDTH / max(end - start, 1)
    processes = []
    for span, _ in ordered:
        process = f'{span["service"]} {span["instance"] or ""}'.strip()
        if process not in processes:
            processes.append(process)
    height = TOP + ROW * len(ordered) + 30 + 18 * len(processes)
    out_lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 90}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="18" font-size="14" font-weight="bold">trace {escape(trace_id)}: {len(spans)} spans, {(end - start) / 1e6:.1f} ms</text>',
    ]
    for tick in range(0, 5):
        x = LEFT + WIDTH * tick / 4
        out_lines.append(f'<line x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{TOP + ROW * len(ordered)}" stroke="#ddd"/>')
        out_lines.append(f'<text x="{x:.1f}" y="{TOP - 16}" text-anchor="middle" fill="#666">{(end - start) * tick / 4 / 1e6:.1f} ms</text>')
    for row, (span, depth) in enumerate(ordered):
        y = TOP + ROW * row
        process = f'{span["service"]} {span["instance"] or ""}'.strip()
        colour = COLOURS[processes.index(process) % len(COLOURS)]
        x = LEFT + (span["start"] - start) * scale
        w = max((span["end"] - span["start"]) * scale, 1.5)
        label = span["name"]
        participant = span["attributes"].get("arbiter.participant") or span["attributes"].get("arbiter.message")
        if participant:
            label += f" ({participant})"
        out_lines.append(f'<text x="{10 + 14 * depth}" y="{y + 15}">{escape(label)}</text>')
        out_lines.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{ROW - 8}" fill="{colour}" rx="2"/>')
        out_lines.append(f'<text x="{x + w + 4:.1f}" y="{y + 15}" fill="#444">{(span["end"] - span["start"]) / 1e6:.2f} ms</text>')
    legend = TOP + ROW * len(ordered) + 24
    for index, process in enumerate(processes):
        y = legend + 18 * index
        out_lines.append(f'<rect x="10" y="{y - 10}" width="12" height="12" fill="{COLOURS[index % len(COLOURS)]}"/>')
        out_lines.append(f'<text x="28" y="{y}">{escape(process)}</text>')
    out_lines.append("</svg>")
    with open(out, "w") as file:
        file.write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
