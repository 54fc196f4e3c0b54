"""Tables and the target summary for `python -m rmsprop_ext bench`."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence

from .config import SMALL_MODEL_STEPS_PER_ROUND, Measurement
from .precision import BASELINE as PRECISION_BASELINE
from .precision import TORCH_PEERS, roofline_of
from .runner import COMPILED_TORCH, IEEE_NATIVE
from .sparse import DENSE_TORCH, OURS_EXACT, ROOFLINE_ROWS, SPARSE_ADAGRAD

__all__ = ["format_report", "summary_lines"]

NATIVE = "native rmsprop_step"
TARGET_SIZE = 1 << 24  # the size the performance targets are stated at
ROOFLINE = "roofline kernel"


def _find(rows: Iterable[Measurement], **match: object) -> Measurement | None:
    for r in rows:
        if all(getattr(r, k) == v for k, v in match.items()):
            return r
    return None


def _paired(slow: Measurement, fast: Measurement) -> tuple[float, float, float]:
    """slow / fast: median, worst and best over the rounds.

    Rows timed in one group ran in the same rounds, a few milliseconds apart, so their ratio is
    taken round by round: a slow spell of the machine then cancels out instead of widening the
    range. Rows without common rounds fall back to the ratio of medians and of the extremes.
    """
    if slow.samples and len(slow.samples) == len(fast.samples):
        ratios = [s / f for s, f in zip(slow.samples, fast.samples)]
        return statistics.median(ratios), min(ratios), max(ratios)
    return slow.median_s / fast.median_s, slow.min_s / fast.max_s, slow.max_s / fast.min_s


def _ratio(slow: Measurement, fast: Measurement) -> str:
    """How many times `fast` beats `slow`: median [worst-best] over the rounds."""
    median, worst, best = _paired(slow, fast)
    return f"{median:.2f}x [{worst:.2f}-{best:.2f}]"


def _fraction(native: Measurement, roof: Measurement) -> str:
    """native's throughput as a fraction of the roofline kernel's: median [worst-best]."""
    median, worst, best = _paired(roof, native)
    return f"{median:.2f} [{worst:.2f}-{best:.2f}]"


def _table(
    title: str, rows: Sequence[Measurement], baseline: Measurement | None, roof: Measurement | None
) -> list[str]:
    header = (
        f"{'implementation':24} {'tensors':>7} {'elements':>11} {'thr':>3} {'median ms':>10} "
        f"{'min-max ms':>17} {'Gelem/s':>8} {'GB/s':>6} {'roofline':>8} {'native is':>10}"
    )
    lines = [title, header, "-" * len(header)]
    for r in rows:
        spread = f"{r.min_s * 1e3:.3f}-{r.max_s * 1e3:.3f}"
        frac = f"{roof.median_s / r.median_s:.2f}" if roof else ""
        faster = f"{r.median_s / baseline.median_s:.2f}x" if baseline else ""
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{r.implementation:24} {r.tensors:>7} {r.elements:>11,} {r.threads:>3} "
            f"{r.median_s * 1e3:>10.3f} {spread:>17} {r.elements_per_s / 1e9:>8.2f} "
            f"{r.gbytes_per_s:>6.1f} {frac:>8} {faster:>10}{note}"
        )
    return [*lines, ""]


def _precision_table(n: int, group: Sequence[Measurement], context: str) -> list[str]:
    """The storage forms at n elements; 'vs fp32' = native float32's time / the row's time and
    'of roofline' = the form's roofline time / its time, taken round by round: median
    [worst-best]."""
    base = _find(group, implementation=PRECISION_BASELINE)
    header = (
        f"{'implementation':46} {'B/elem':>6} {'median ms':>10} {'GB/s':>6} "
        f"{'vs native fp32':>22} {'of its roofline':>18}"
    )
    lines = [_titled(f"Storage forms, {n:,} elements, {group[0].threads} threads", context), header]
    lines.append("-" * len(header))
    for r in group:
        versus = _ratio(base, r) if base else ""
        roof = _find(group, implementation=roofline_of(r.implementation))
        of_roofline = _fraction(r, roof) if roof else ""
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{r.implementation:46} {r.bytes_per_element:>6g} {r.median_s * 1e3:>10.3f} "
            f"{r.gbytes_per_s:>6.1f} {versus:>22} {of_roofline:>18}{note}"
        )
    return [*lines, ""]


def _sparse_table(group: Sequence[Measurement], context: str) -> list[str]:
    """The sparse section: 'exact is' = the row's time / the exact sparse step's, and 'of
    roofline' = the roofline kernel's time on the same rows / the row's, round by round: median
    [worst-best]. GB/s counts the touched rows' bytes (20 per element of the distinct rows)."""
    ours = _find(group, implementation=OURS_EXACT)
    roof = _find(group, implementation=ROOFLINE_ROWS)
    header = (
        f"{'implementation':28} {'median ms':>10} {'min-max ms':>17} "
        f"{'GB/s':>6} {'exact is':>24} {'of roofline':>18}"
    )
    title = f"Sparse embedding gradients, {group[0].elements:,} touched elements per step"
    lines = [_titled(title, context), header, "-" * len(header)]
    for r in group:
        versus = _ratio(r, ours) if ours and r is not ours else ""
        of_roofline = _fraction(r, roof) if roof and r is not roof else ""
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{r.implementation:28} {r.median_s * 1e3:>10.3f} "
            f"{f'{r.min_s * 1e3:.3f}-{r.max_s * 1e3:.3f}':>17} "
            f"{r.gbytes_per_s:>6.1f} {versus:>24} {of_roofline:>18}{note}"
        )
    return [*lines, ""]


def _titled(title: str, context: str) -> str:
    return f"{title} [{context}]" if context else title


def format_report(rows: Sequence[Measurement], context: str = "") -> str:
    """Every section as tables; 'native is' = the row's time / the native kernel's time.
    `context` (the kernel and torch's square root) is named in every table's title.

    Within a table the cases were timed interleaved, round by round, so their ratios compare
    figures taken under the same conditions.
    """
    out: list[str] = []
    sizes = [r for r in rows if r.section == "sizes"]
    for n in sorted({r.elements for r in sizes}):
        group = [r for r in sizes if r.elements == n]
        out += _table(
            _titled(f"Single float32 tensor of {n:,} elements", context),
            group,
            _find(group, implementation=NATIVE),
            _find(group, implementation=ROOFLINE),
        )
    variants = [r for r in rows if r.section == "variants"]
    for v in sorted({r.variant for r in variants}):
        group = [r for r in variants if r.variant == v]
        out += _table(
            _titled(f"Variant '{v}' ({group[0].bytes_per_element:g} B/element)", context),
            group,
            _find(group, implementation=NATIVE),
            _find(group, implementation=ROOFLINE),
        )
    precision = [r for r in rows if r.section == "precision"]
    for n in sorted({r.elements for r in precision}):
        out += _precision_table(n, [r for r in precision if r.elements == n], context)
    # Sections without a roofline column, each against one row of its own.
    own_baseline: list[tuple[str, str, Callable[[list[Measurement]], Measurement | None]]] = [
        (
            "many tensors",
            "Many tensors, same total size (RMSprop.step over a list of parameters)",
            lambda group: group[1] if len(group) > 1 else None,  # 1000 views of one tensor
        ),
        (
            "small model",
            f"Small model: per-step overhead ({SMALL_MODEL_STEPS_PER_ROUND} steps back to back per "
            "round, data in cache)",
            lambda group: _find(group, implementation="native RMSprop.step"),
        ),
        (
            "pages",
            "Memory pages: the native step on buffers backed by 4 KiB or 2 MiB pages",
            lambda group: group[0],
        ),
    ]
    for section, title, baseline in own_baseline:
        group = [r for r in rows if r.section == section]
        if group:
            out += _table(_titled(title, context), group, baseline(group), None)
    sparse = [r for r in rows if r.section == "sparse"]
    if sparse:
        out += _sparse_table(sparse, context)
    threads = [r for r in rows if r.section == "threads"]
    for n in sorted({r.elements for r in threads}):
        group = sorted(
            (r for r in threads if r.elements == n), key=lambda r: (r.implementation, r.threads)
        )
        one = _find(group, implementation=NATIVE, threads=1)
        title = f"Threads, {n:,} elements ('native is' = time / 1-thread native time)"
        out += _table(_titled(title, context), group, one, None)
    return "\n".join(out)


def summary_lines(rows: Sequence[Measurement]) -> list[str]:
    """The issue-3 targets, each with its measured ratio: median [worst-best]."""
    lines = []
    sizes = [r for r in rows if r.section == "sizes"]
    if sizes:
        measured = {r.elements for r in sizes}
        n = TARGET_SIZE if TARGET_SIZE in measured else max(measured)
        native = _find(sizes, implementation=NATIVE, elements=n)
        roof = _find(sizes, implementation=ROOFLINE, elements=n)
        if native and roof:
            lines.append(
                f"{n:,} elements: native / roofline throughput = {_fraction(native, roof)}"
            )
        ieee = _find(sizes, implementation=IEEE_NATIVE, elements=n)
        if ieee and roof:
            lines.append(
                f"{n:,} elements: native with IEEE sqrt / roofline throughput = "
                f"{_fraction(ieee, roof)}"
            )
        # Each peer against the native path of its kind, all on the same memory: the Python
        # formulas against the functional call, the torch optimizers against RMSprop.step.
        for peer in ("numpy scratch formula", "torch scratch formula", "Python scalar loop"):
            other = _find(sizes, implementation=peer, elements=n)
            if native and other:
                lines.append(f"{n:,} elements: native vs {peer} = {_ratio(other, native)}")
        optimizer = _find(sizes, implementation="native RMSprop.step", elements=n)
        adagrad = _find(sizes, implementation="torch fused Adagrad", elements=n)
        if optimizer and adagrad:
            ratio = _ratio(adagrad, optimizer)
            lines.append(f"{n:,} elements: RMSprop.step vs torch fused Adagrad = {ratio}")
        compiled = _find(sizes, implementation=COMPILED_TORCH, elements=n)
        if optimizer and compiled:
            ratio = _ratio(compiled, optimizer)
            lines.append(f"{n:,} elements: RMSprop.step vs {COMPILED_TORCH} = {ratio}")
        torch_rows = [
            r for r in sizes if r.elements == n and r.implementation.startswith("torch RMSprop")
        ]
        if optimizer and torch_rows:
            best = min(torch_rows, key=lambda r: r.median_s)
            label = f"{best.implementation} (the faster)"
            lines.append(f"{n:,} elements: RMSprop.step vs {label} = {_ratio(best, optimizer)}")
    sparse = [r for r in rows if r.section == "sparse"]
    exact = _find(sparse, implementation=OURS_EXACT)
    if exact:
        for peer in (DENSE_TORCH, SPARSE_ADAGRAD):
            other = _find(sparse, implementation=peer)
            if other:
                lines.append(f"sparse: exact sparse step vs {peer} = {_ratio(other, exact)}")
        roof = _find(sparse, implementation=ROOFLINE_ROWS)
        if roof:
            lines.append(
                f"sparse: exact sparse step / roofline on the same rows = {_fraction(exact, roof)}"
            )
    for r in rows:
        if r.section == "sizes" and r.implementation == NATIVE:
            ieee = _find(rows, section="sizes", elements=r.elements, implementation=IEEE_NATIVE)
            if ieee:
                lines.append(
                    f"{r.elements:,} elements: torch's rounding (MKL sqrt) costs "
                    f"{_ratio(r, ieee)} the IEEE-sqrt step's time"
                )
    for r in rows:
        if r.section == "variants" and r.implementation == NATIVE:
            roof = _find(rows, section="variants", variant=r.variant, implementation=ROOFLINE)
            if roof:
                lines.append(f"variant {r.variant}: native / its roofline = {_fraction(r, roof)}")
        if r.section == "variants" and r.implementation == "native RMSprop.step":
            compiled = _find(
                rows, section="variants", variant=r.variant, implementation=COMPILED_TORCH
            )
            if compiled:
                lines.append(
                    f"variant {r.variant}: RMSprop.step vs {COMPILED_TORCH} = {_ratio(compiled, r)}"
                )
    many = [
        r for r in rows if r.section == "many tensors" and r.implementation == "native RMSprop.step"
    ]
    if len(many) >= 2:
        one, lots = many[0], many[1]  # these two share their memory
        lines.append(
            f"{lots.tensors} tensors vs 1 tensor, same total and same memory, through "
            f"RMSprop.step: throughput ratio = {_fraction(lots, one)}"
        )
    if len(many) >= 3:
        lines.append(
            f"{many[2].tensors} tensors allocated one by one vs 1 tensor: throughput ratio = "
            f"{_fraction(many[2], many[0])}"
        )
    small = [r for r in rows if r.section == "small model"]
    ours = _find(small, implementation="native RMSprop.step")
    if ours:
        for r in small:
            if r is not ours:
                lines.append(
                    f"small model ({r.tensors} x {r.elements // r.tensors}): native vs "
                    f"{r.implementation} = {_ratio(r, ours)}"
                )
    pages = [r for r in rows if r.section == "pages"]
    if len(pages) == 2:
        lines.append(
            f"{pages[0].elements:,} elements: 2 MiB pages vs 4 KiB pages = "
            f"{_ratio(pages[0], pages[1])}"
        )
    precision = [r for r in rows if r.section == "precision"]
    for n in sorted({r.elements for r in precision}):
        group = [r for r in precision if r.elements == n]
        base = _find(group, implementation=PRECISION_BASELINE)
        for r in group:
            if base and r is not base:
                against = "native fp32/fp32" if r.implementation.startswith("native") else ""
                if against:
                    lines.append(
                        f"{n:,} elements: {r.implementation} ({r.bytes_per_element:g} B) vs "
                        f"{against} (20 B) = {_ratio(base, r)}"
                    )
        for r in group:
            roof = _find(group, implementation=roofline_of(r.implementation))
            if roof:
                lines.append(
                    f"{n:,} elements: {r.implementation} / its roofline = {_fraction(r, roof)}"
                )
        for peer, _variant, _compiled, label in [
            *TORCH_PEERS,
            ("bnb RMSprop8bit bf16", "plain", False, "native bf16/8bit SR"),
        ]:
            mine, theirs = _find(group, implementation=label), _find(group, implementation=peer)
            if mine and theirs:
                lines.append(f"{n:,} elements: {label} vs {peer} = {_ratio(theirs, mine)}")
    threads = [r for r in rows if r.section == "threads" and r.implementation == NATIVE]
    for n in sorted({r.elements for r in threads}):
        single = _find(threads, elements=n, threads=1)
        for r in threads:
            if r.elements == n and r.threads > 1 and single:
                lines.append(f"{n:,} elements: {r.threads} threads vs 1 = {_ratio(single, r)}")
    return lines
