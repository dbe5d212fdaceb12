"""Graphs as data (what a finding shows) and their PNG rendering with matplotlib."""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Graph", "Line", "Span", "render_png"]

_LOCK = threading.Lock()  # pyplot's state is global; one figure at a time


@dataclass(frozen=True)
class Line:
    label: str
    times: tuple[datetime, ...]
    values: tuple[float, ...]
    style: str = "-"  # matplotlib line style; "--" for forecasts, ":" for limits


@dataclass(frozen=True)
class Span:
    """A shaded stretch of time: a predicted burst window, an anomaly."""

    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Graph:
    title: str
    unit: str
    lines: tuple[Line, ...]
    spans: tuple[Span, ...] = ()

    def is_empty(self) -> bool:
        return not any(any(math.isfinite(v) for v in line.values) for line in self.lines)


def render_png(graph: Graph, *, width: float = 9.0, height: float = 3.6) -> bytes:
    """The graph as a PNG image (about 30-60 kB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with _LOCK:
        fig, ax = plt.subplots(figsize=(width, height), dpi=100)
        try:
            for line in graph.lines:
                ax.plot(list(line.times), line.values, line.style, label=line.label, linewidth=1.2)  # type: ignore[arg-type]
            for span in graph.spans:
                ax.axvspan(span.start, span.end, alpha=0.2, color="tab:red", label=span.label)  # type: ignore[arg-type]
            ax.set_title(graph.title)
            ax.set_ylabel(graph.unit)
            ax.grid(visible=True, alpha=0.3)
            if graph.lines or graph.spans:
                ax.legend(loc="upper left", fontsize="small")
            fig.autofmt_xdate()
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            return buffer.getvalue()
        finally:
            plt.close(fig)
