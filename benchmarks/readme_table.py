"""Prints the README's results table from `python -m rmsprop_ext bench --json PATH` output.

python -m rmsprop_ext bench --json docs/bench.json --plot docs/bench.png
python benchmarks/readme_table.py docs/bench.json
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any


def find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    for row in rows:
        if all(row[k] == v for k, v in match.items()):
            return row
    raise KeyError(match)


def ms(row: dict[str, Any]) -> str:
    return f"{row['median_s'] * 1e3:.3f} [{row['min_s'] * 1e3:.3f}-{row['max_s'] * 1e3:.3f}]"


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    rows = data["rows"]
    n = 1 << 24
    sizes = [r for r in rows if r["section"] == "sizes" and r["elements"] == n]
    native = find(sizes, implementation="native rmsprop_step")
    roof = find(sizes, implementation="roofline kernel")
    print(
        f"| one float32 tensor of {n:,} elements | median ms [min-max] | GB/s | of roofline | "
        "native is faster by |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in sizes:
        print(
            f"| {r['implementation']} | {ms(r)} | {r['gbytes_per_s']:.1f} | "
            f"{roof['median_s'] / r['median_s']:.2f} | {r['median_s'] / native['median_s']:.2f}x |"
        )
    print()
    print("| case | median ms [min-max] | native is faster by |")
    print("| --- | ---: | ---: |")
    for section in ("small model", "many tensors"):
        group = [r for r in rows if r["section"] == section]
        ours = find(group, implementation="native RMSprop.step", tensors=group[-1]["tensors"])
        if section == "many tensors":
            ours = group[1]  # 1000 views of the single tensor's memory
        for r in group:
            shape = f"{r['tensors']} x {r['elements'] // r['tensors']:,}"
            label = f"{section}: {shape} {r['implementation']}"
            if r["note"]:
                label += f" ({r['note']})"
            print(f"| {label} | {ms(r)} | {r['median_s'] / ours['median_s']:.2f}x |")
    precision_table(rows)
    print()
    print("Summary lines from the same run (per-round ratios: median [worst-best]):")
    for line in data["summary"]:
        print(f"- {line}")


def precision_table(rows: list[dict[str, Any]]) -> None:
    """The storage forms at each size, against native float32/float32 of the same rounds."""
    precision = [r for r in rows if r["section"] == "precision"]
    for n in sorted({r["elements"] for r in precision}):
        group = [r for r in precision if r["elements"] == n]
        base = find(group, implementation="native fp32/fp32")
        print()
        print(f"| {n:,} elements | B/element | median ms [min-max] | GB/s | vs native fp32 |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for r in group:
            ratios = sorted(b / s for b, s in zip(base["samples"], r["samples"]))
            median = statistics.median(ratios)
            versus = f"{median:.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]"
            label = r["implementation"] + (f" ({r['note']})" if r["note"] else "")
            print(
                f"| {label} | {r['bytes_per_element']} | {ms(r)} | {r['gbytes_per_s']:.1f} | "
                f"{versus} |"
            )


if __name__ == "__main__":
    main(sys.argv[1])
