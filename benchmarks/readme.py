"""Write the README's speed table from one saved run: ``python -m benchmarks.readme RESULT.json [--write]``.

Every figure, ratio and ✓/✗ comes from that one run's JSON (written by
``python -m benchmarks``); nothing is typed by hand and no row comes from
another run. Without ``--write`` the block is printed; with it, the block
replaces the text between the README's ``<!-- speed-table -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.run import column_title, fmt, fmt_ratio, render_markdown

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- speed-table: written by `python -m benchmarks.readme`; do not edit by hand -->"
END = "<!-- /speed-table -->"


def render(data: dict[str, Any], source: str) -> str:
    """The README block for one run: where and how it was measured, then the table and its notes."""
    machine, config = data["machine"], data["config"]
    columns = config["backends"]
    loops = config.get("loops") or [config.get("loop", "uvloop")]
    header = ["workload"]
    for column in columns:
        title = column_title(column)
        if column == "actorloop" and len(loops) > 1:
            title = f"actorloop ({loops[0]})"
        header.append(title)
    with_ray = "ray" in columns and "actorloop" in columns
    with_floor = "floor" in columns and "actorloop" in columns
    if with_ray:
        header.append("vs Ray")
    if with_floor:
        header.append("vs floor")
    header.append("target")
    rows = []
    for row in data["metrics"]:
        line = [row["label"]]
        for column in columns:
            stats = row["stats"].get(column)
            line.append(f"{fmt(stats['median'])} {row['unit']}" if stats else "—")
        if with_ray:
            line.append(fmt_ratio(row["ratio_vs_ray"]))
        if with_floor:
            line.append(fmt_ratio(row["ratio_vs_floor"]))
        mark = {True: "✓ ", False: "✗ ", None: ""}[row["target_met"]] if row["target"] else ""
        line.append(f"{mark}{row['target']}")
        rows.append(line)
    when = data["timestamp"][:16].replace("T", " ")
    versions = data.get("backend_versions", {})
    intro = (
        f"One run of `{config.get('command', 'python -m benchmarks')}` on {when} "
        f"({source}): {machine['cpu']}, {machine['cpus_allowed']} CPUs, {machine.get('memory_gib', '?')} GiB, "
        f"Python {machine['python']}, actorloop {versions.get('actorloop', '?')}"
        + (f", Ray {versions['ray']}" if versions.get("ray") else "")
        + f". The driver's async code runs under plain `asyncio.run` ({loops[0]})"
        + (f"; the {', '.join(loops[1:])} column reruns those workloads with the driver on it" if loops[1:] else "")
        + f". Each figure is the median of {config['repeat']} interleaved runs; a ratio above 1× means "
        "actorloop is better; ✓/✗ are computed from the figures."
    )
    notes = [f"- {note}" for note in data.get("notes", [])]
    parts = [START, "", intro, "", render_markdown(header, rows), ""]
    if notes:
        parts += [*notes, ""]
    parts.append(END)
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme")
    parser.add_argument("result", type=Path, help="a run's JSON from benchmarks/results/")
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    data = json.loads(args.result.read_text())
    try:
        source = str(args.result.resolve().relative_to(ROOT))
    except ValueError:
        source = args.result.name
    block = render(data, source)
    if not args.write:
        print(block)
        return 0
    text = args.readme.read_text()
    if START not in text or END not in text:
        print(f"{args.readme}: no {START!r} ... {END!r} markers to replace", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(head + block + tail)
    print(f"wrote the speed table of {source} into {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
