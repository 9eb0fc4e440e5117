"""The IMAGE output of SAE Find Features: one horizontal bar per ranked feature, named by its label where it has one."""
from __future__ import annotations

from PIL import Image, ImageDraw

from ...sae.contrast import Contrast
from ...sae.labels import describe
from ..measure.scale_plot import COLOURS, _fmt, _font, _to_image

WIDTH, ROW, TOP, NAME_WIDTH, VALUE_WIDTH = 720, 26, 44, 190, 250
NEGATIVE = (170, 170, 170)  # a feature that fires more for the neutral set


def contrast_plot(result: Contrast, labels: dict[int, str]):
    """[1, H, W, 3]: the top features' scores as bars, best first, with their means and frequencies."""
    image = Image.new("RGB", (WIDTH, TOP + ROW * max(len(result.features), 1) + 16), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)
    draw.text((10, 10), f"features by {result.rank_by}: concept (A) vs neutral (B)", fill=COLOURS["text"], font=font)
    left, right = NAME_WIDTH, WIDTH - VALUE_WIDTH
    peak = max((abs(s) for s in result.score), default=1.0) or 1.0
    for r, f in enumerate(result.features):
        y = TOP + r * ROW
        score = result.score[r]
        draw.text((left - 8, y + ROW / 2), f"{r + 1}. #{describe(f, labels)}", fill=COLOURS["text"], font=small,
                  anchor="rm")
        length = (right - left) * abs(score) / peak
        draw.rectangle([left, y + 4, left + max(length, 1), y + ROW - 4],
                       fill=COLOURS["bar"] if score > 0 else NEGATIVE)
        draw.text((right + 8, y + ROW / 2),
                  f"{_fmt(score)}  mean {_fmt(result.concept_mean[r])}/{_fmt(result.neutral_mean[r])}  "
                  f"freq {result.concept_frequency[r]:.2f}/{result.neutral_frequency[r]:.2f}",
                  fill=COLOURS["text"], font=small, anchor="lm")
    return _to_image(image)
