"""The IMAGE output of Measure Activation Scale, drawn with PIL: histograms for one site, a profile for all blocks."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PANEL = (560, 400)              # one chart, pixels
MARGIN = (70, 58, 20, 60)       # left, top, right, bottom: room for tick labels and titles
DISPLAY_BARS = 60
VALUE_WINDOW = (0.001, 0.999)   # the value histogram shows this quantile range: FLUX has rare huge outliers
COLOURS = {"bar": (70, 110, 180), "mean": (200, 60, 40), "p99": (230, 150, 30), "axis": (30, 30, 30),
           "grid": (225, 225, 225), "text": (20, 20, 20), "split": (150, 150, 150)}


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick positions (1-2-5 steps) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


class _Chart:
    """One panel with linear axes mapped into pixels of ``draw`` at offset ``origin``."""

    def __init__(self, draw, origin, x_range, y_range, title, x_label, y_label, width=PANEL[0]):
        self.draw, self.font, self.small = draw, _font(15), _font(12)
        ox, oy = origin
        self.left, self.top = ox + MARGIN[0], oy + MARGIN[1]
        self.right, self.bottom = ox + width - MARGIN[2], oy + PANEL[1] - MARGIN[3]
        self.x_range, self.y_range = x_range, y_range
        draw.text((self.left, oy + 10), title, fill=COLOURS["text"], font=self.font)
        draw.text(((self.left + self.right) // 2, self.bottom + 36), x_label, fill=COLOURS["text"],
                  font=self.small, anchor="mt")
        draw.text((ox + 6, self.top - 22), y_label, fill=COLOURS["text"], font=self.small)

    def px(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        fx = (x - x0) / (x1 - x0) if x1 > x0 else 0.5
        fy = (y - y0) / (y1 - y0) if y1 > y0 else 0.0
        return self.left + fx * (self.right - self.left), self.bottom - fy * (self.bottom - self.top)

    def axes(self, x_ticks=None, y_ticks=None, y_format=_fmt, x_labels=None):
        d = self.draw
        for y in y_ticks or _ticks(*self.y_range):
            _, py = self.px(self.x_range[0], y)
            d.line([(self.left, py), (self.right, py)], fill=COLOURS["grid"])
            d.text((self.left - 6, py), y_format(y), fill=COLOURS["text"], font=self.small, anchor="rm")
        for i, x in enumerate(x_ticks if x_ticks is not None else _ticks(*self.x_range)):
            px, _ = self.px(x, self.y_range[0])
            d.line([(px, self.bottom), (px, self.bottom + 4)], fill=COLOURS["axis"])
            label = x_labels[i] if x_labels else _fmt(x)
            d.text((px, self.bottom + 8), label, fill=COLOURS["text"], font=self.small, anchor="mt")
        d.line([(self.left, self.top), (self.left, self.bottom), (self.right, self.bottom)], fill=COLOURS["axis"])


def _display_counts(hist, lo: float, hi: float) -> np.ndarray:
    """The streaming histogram's fine bins summed into DISPLAY_BARS bars over [lo, hi] (by bin centre)."""
    centres = (hist.edges[:-1] + hist.width / 2).numpy()
    counts = hist.counts.numpy()
    inside = (centres >= lo) & (centres <= hi)
    bar = np.clip(((centres[inside] - lo) / (hi - lo) * DISPLAY_BARS).astype(int), 0, DISPLAY_BARS - 1)
    return np.bincount(bar, weights=counts[inside], minlength=DISPLAY_BARS)


def _histogram_panel(draw, origin, hist, lo, hi, marks, title, x_label, log_counts):
    if not hi > lo:
        hi = lo + 1.0
    counts = _display_counts(hist, lo, hi)
    heights = np.log10(1 + counts) if log_counts else counts
    top = float(heights.max()) or 1.0
    chart = _Chart(draw, origin, (lo, hi), (0.0, top * 1.05), title, x_label,
                   "count of values (log scale)" if log_counts else "tokens")
    if log_counts:
        ticks = list(range(0, int(top * 1.05) + 1))
        chart.axes(y_ticks=ticks, y_format=lambda v: f"1e{int(v)}" if v else "1")
    else:
        chart.axes()
    width = (hi - lo) / DISPLAY_BARS
    for i, h in enumerate(heights):
        if h > 0:
            x0, y0 = chart.px(lo + i * width, float(h))
            x1, y1 = chart.px(lo + (i + 1) * width, 0.0)
            draw.rectangle([x0, y0, max(x0, x1 - 1), y1], fill=COLOURS["bar"])
    for i, (name, value, colour) in enumerate(marks):
        if lo <= value <= hi:
            x, _ = chart.px(value, 0.0)
            draw.line([(x, chart.top), (x, chart.bottom)], fill=colour, width=2)
        draw.text((chart.right - 4, chart.top + 4 + 16 * i), f"{name} {_fmt(value)}", fill=colour,
                  font=chart.small, anchor="rt")


def _to_image(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)


def site_plot(key: str, stats) -> torch.Tensor:
    """[1, H, W, 3]: histogram of activation values (central 99.8 %, log counts) and of token norms."""
    image = Image.new("RGB", (PANEL[0] * 2, PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    s = stats.summary()
    lo, hi = stats.value_hist.quantiles(VALUE_WINDOW, s["min"], s["max"])
    outside = f" ({VALUE_WINDOW[0]:.1%}-{VALUE_WINDOW[1]:.1%} quantiles; full range {_fmt(s['min'])} to {_fmt(s['max'])})"
    _histogram_panel(draw, (0, 0), stats.value_hist, lo, hi,
                     [("mean", s["mean"], COLOURS["mean"]), ("p99", s["p99"], COLOURS["p99"])],
                     f"{key}: activation values", "activation value" + outside, log_counts=True)
    _histogram_panel(draw, (PANEL[0], 0), stats.norm_hist, stats.norms.min, s["norm_max"],
                     [("mean", s["norm_mean"], COLOURS["mean"])],
                     f"{key}: per-token L2 norm", "token L2 norm (same units as the activations)", log_counts=False)
    return _to_image(image)


def blocks_plot(profile: list[tuple[str, float, float]], x_label: str) -> torch.Tensor:
    """[1, H, W, 3]: token-norm mean and p99 per block (FLUX: double blocks D then single blocks S, a line
    between them; UNet: its spatial transformers), ``(label, mean, p99)`` each."""
    image = Image.new("RGB", (PANEL[0] * 2, PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    n = len(profile)
    top = max(max(p99 for _, _, p99 in profile), 1e-12)
    chart = _Chart(draw, (0, 0), (-0.5, n - 0.5), (0.0, top * 1.08),
                   "token L2 norm per block (image tokens, all steps)", x_label,
                   "token L2 norm", width=PANEL[0] * 2)
    every = max(1, math.ceil(n / 24))
    shown = list(range(0, n, every))
    chart.axes(x_ticks=shown, x_labels=[profile[i][0] for i in shown])
    for series, index, colour in (("mean", 1, COLOURS["mean"]), ("p99", 2, COLOURS["p99"])):
        points = [chart.px(i, p[index]) for i, p in enumerate(profile)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    singles = [i for i, (label, _, _) in enumerate(profile) if label.startswith("S")]
    if singles and singles[0] > 0:
        x, _ = chart.px(singles[0] - 0.5, 0.0)
        draw.line([(x, chart.top), (x, chart.bottom)], fill=COLOURS["split"], width=1)
    for i, (name, colour) in enumerate((("mean", COLOURS["mean"]), ("p99", COLOURS["p99"]))):
        y = chart.top + 10 + 16 * i
        draw.line([(chart.right - 60, y), (chart.right - 40, y)], fill=colour, width=2)
        draw.text((chart.right - 34, y), name, fill=colour, font=chart.small, anchor="lm")
    return _to_image(image)
