"""The HTML page's figures: reliability diagrams and ECE against shift severity.

Rendered with matplotlib's object-oriented API on the Agg canvas (no pyplot,
no global backend switch) and saved as palette PNG at :data:`DPI` without the
software tag, so rebuilding a release's views gives the same bytes. Palette PNG,
not SVG: the SVGs of release 1.0's 72 figures took 4.1 MB of the release's 50 MB
budget, full-colour PNGs 2.8 MB; a 64-colour palette keeps the plots' few colours.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cud_bench.io import write_bytes_atomic
from cud_bench.metrics import ReliabilityBins

DPI = 80
COLOURS = 64
SUFFIX = ".png"
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.prop_cycle": matplotlib.cycler(color=matplotlib.colormaps["tab10"].colors),
}
PER_ROW = 4


def reliability_figure(title: str, bins: dict[str, ReliabilityBins], path: Path) -> None:
    """One panel per method: accuracy against mean confidence per bin, with the diagonal of perfect calibration."""
    with matplotlib.rc_context(RC):
        rows = -(-len(bins) // PER_ROW)
        fig = Figure(figsize=(2.2 * min(PER_ROW, len(bins)), 2.3 * rows))
        axes = fig.subplots(rows, min(PER_ROW, len(bins)), squeeze=False, sharex=True, sharey=True)
        for ax, (method, b) in zip(axes.flat, bins.items()):
            full = b.count > 0
            centers, widths = (b.edges[:-1] + b.edges[1:]) / 2, np.diff(b.edges)
            ax.bar(centers[full], b.accuracy[full], width=widths[full], color="#4c72b0", edgecolor="white", label="accuracy")
            ax.bar(
                centers[full], (b.confidence - b.accuracy)[full], bottom=b.accuracy[full], width=widths[full],
                color="#dd8452", alpha=0.5, label="gap to confidence",
            )
            ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
            ax.set(xlim=(0, 1), ylim=(0, 1), title=method)
        for ax in axes.flat[len(bins):]:
            ax.set_axis_off()
        for ax in axes[-1]:
            ax.set_xlabel("confidence")
        for ax in axes[:, 0]:
            ax.set_ylabel("accuracy")
        axes.flat[0].legend(loc="upper left", frameon=False)
        fig.suptitle(title)
        fig.tight_layout()
        _save(fig, path)


def severity_figure(title: str, curves: dict[str, dict[str, dict[int, float]]], path: Path) -> None:
    """ECE (%) against severity, one line per method; ``curves`` is {variant: {method: {severity: ECE}}}
    with severity 0 the clean test set."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.3 * len(curves), 2.6))
        axes = fig.subplots(1, len(curves), squeeze=False, sharey=True)[0]
        for ax, (variant, by_method) in zip(axes, curves.items()):
            for method, points in by_method.items():
                severities = sorted(points)
                ax.plot(severities, [100 * points[s] for s in severities], marker="o", markersize=3, label=method)
            ax.set(title=variant, xlabel="severity (0 = clean)")
            ax.set_xticks(sorted({s for points in by_method.values() for s in points}))
        axes[0].set_ylabel("ECE (%)")
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        fig.suptitle(title)
        fig.tight_layout()
        _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    image = Image.open(buffer).convert("RGB").quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    write_bytes_atomic(path, out.getvalue())
