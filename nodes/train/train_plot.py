"""The IMAGE output of SAE Train: batch FVU and dead-latent fraction against the training step."""
from __future__ import annotations

from PIL import Image, ImageDraw

from ..measure.scale_plot import COLOURS, PANEL, _Chart, _to_image


def loss_plot(history: list[tuple[int, float, float]], title: str):
    """[1, H, W, 3]: the FVU curve (left) and the dead fraction (right) over the steps logged."""
    image = Image.new("RGB", (PANEL[0] * 2, PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    last = max((s for s, _, _ in history), default=1) or 1
    for panel, (index, name, colour) in enumerate(((1, "batch FVU", COLOURS["mean"]),
                                                   (2, "dead latent fraction", COLOURS["bar"]))):
        values = [h[index] for h in history]
        top = max(max(values, default=0.0), 1e-6) * 1.08
        chart = _Chart(draw, (PANEL[0] * panel, 0), (0.0, float(last)), (0.0, top),
                       f"{title}: {name}" if panel == 0 else name, "step", name)
        chart.axes()
        points = [chart.px(step, v) for step, v in zip((h[0] for h in history), values)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points[-1:]:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    return _to_image(image)
