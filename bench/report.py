"""Results of `python -m bench`: one Figure per measured ratio, rendered as a table and a PNG plot.

A Figure is one line of the summary: what was compared, the measured ratio, its target from
issue 5 (≥ for "higher is better", ≤ for "lower is better"), met or missed, the raw numbers
behind it and how they were sampled. A figure that could not be measured (e.g. no PC/SC stack)
carries the reason instead of a value and counts as neither met nor missed.

`markdown()` gives the summary.md text (also printed by the runner), `plot()` writes
summary.png with matplotlib's Agg backend (no display needed): one panel per figure, the
compared quantities as bars and the ratio against its target in the panel title.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Optional

HIGHER = "higher"
LOWER = "lower"


@dataclasses.dataclass
class Figure:
    """One measured ratio against its target.

    key: "P1", "P3 scaling", ...; title: what the ratio compares; ratio: the measured value
    (None when not measured); target and better (HIGHER: ratio >= target, LOWER: ratio <=
    target); detail: the raw numbers in one line; sampling: how the samples were interleaved;
    bars: (label, value) pairs plotted for this figure, in `unit`; error: why it was not measured;
    diagnostic: a figure that explains another (its target in brackets, never met or missed).
    """

    key: str
    title: str
    ratio: Optional[float]
    target: float
    better: str = HIGHER
    detail: str = ""
    sampling: str = ""
    bars: list = dataclasses.field(default_factory=list)
    unit: str = ""
    error: Optional[str] = None
    diagnostic: bool = False      # shown beside a target figure to explain it; not itself a target

    def __post_init__(self):
        if self.better not in (HIGHER, LOWER):
            raise ValueError(f"better must be {HIGHER!r} or {LOWER!r}, not {self.better!r}")
        if self.ratio is None and not self.error:
            raise ValueError(f"{self.key}: a figure without a ratio needs the reason (error)")

    @property
    def met(self) -> Optional[bool]:
        if self.ratio is None or self.diagnostic:
            return None
        return self.ratio >= self.target if self.better == HIGHER else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        text = f"{'≥' if self.better == HIGHER else '≤'} {self.target:g}"
        return f"({text})" if self.diagnostic else text

    @property
    def verdict(self) -> str:
        if self.diagnostic and self.ratio is not None:
            return "diagnostic"
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def machine() -> str:
    """CPU model, CPU count, kernel and Python: the context every figure needs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(figures: list) -> str:
    """The summary table in Markdown (one row per figure)."""
    rows = ["| figure | compares | ratio | target | result | measured |",
            "|---|---|---:|---:|---|---|"]
    for f in figures:
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "–"
        measured = f.detail if f.ratio is not None else f"not measured: {f.error}"
        rows.append(f"| {f.key} | {_cell(f.title)} | {ratio} | {f.target_text} | {f.verdict} | {_cell(measured)} |")
    return "\n".join(rows)


def markdown(figures: list, *, command: str, started: _dt.datetime, elapsed: float,
             load: tuple = (), notes: list = ()) -> str:
    """The whole summary.md: context, the table, how each figure was sampled, notes."""
    when = started.astimezone().isoformat(timespec="seconds")
    load_text = (f" Load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}: the machine is "
                 "shared, so every comparison alternates its two sides in the same run." if len(load) == 2 else "")
    met = sum(1 for f in figures if f.met)
    measured = sum(1 for f in figures if f.met is not None)
    lines = [
        "# mynaemu against its peers and floors (issue 5)",
        "",
        f"Measured {when} by `{command}` in {elapsed:.0f} s on {machine()}.{load_text}",
        "",
        table(figures),
        "",
        f"{met} of {measured} measured targets met.",
        "",
        "## How each figure was sampled",
        "",
    ]
    for f in figures:
        if f.sampling:
            lines.append(f"- **{f.key}**: {f.sampling}")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines.append("")
    return "\n".join(lines)


def plot(figures: list, path: Path) -> Path:
    """summary.png: one panel per figure with its bars, the ratio and target in the title."""
    import matplotlib

    matplotlib.use("Agg")           # files only, no display (CI, containers)
    import matplotlib.pyplot as plt

    shown = [f for f in figures if f.bars]
    if not shown:
        shown = figures
    cols = min(3, max(1, len(shown)))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    colours = {True: "#2e7d32", False: "#c62828", None: "#757575"}
    for ax, f in zip(axes.flat, shown):
        if f.bars:
            labels = [label for label, _ in f.bars]
            values = [value for _, value in f.bars]
            bars = ax.bar(range(len(values)), values, color=["#1565c0"] + ["#90a4ae"] * (len(values) - 1))
            ax.set_xticks(range(len(values)), labels, fontsize=8, rotation=15 if len(values) > 2 else 0)
            ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=8, padding=2)
            ax.set_ylabel(f.unit, fontsize=8)
            ax.margins(y=0.15)
        else:
            ax.text(0.5, 0.5, f.error or "no data", ha="center", va="center", wrap=True, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "–"
        ax.set_title(f"{f.key}: ratio {ratio} (target {f.target_text}) {f.verdict}",
                     fontsize=9, color=colours[f.met])
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("mynaemu benchmark suite (python -m bench)", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(value: float) -> str:
    if value >= 10000:
        return f"{value / 1000:,.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"
