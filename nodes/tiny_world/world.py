"""The world itself: 64x64 pictures of one coloured shape on a plain background, and their prompts.

Pure numpy/PIL and seeded, so the training data, the tests and the benchmark all draw the same world.
A scene is (colour, shape, centre, size); its prompt names the colour and shape: "a red circle".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
BACKGROUND = (235, 235, 235)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (40, 75, 220),
    "yellow": (235, 200, 20),
}
SHAPES = ("circle", "square", "triangle")
HALF_SIZE_RANGE = (10, 20)  # half the object's width in pixels
SUPERSAMPLE = 4  # drawn 4x larger then box-filtered: smooth edges like a real image


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    cx: float  # centre, pixels
    cy: float
    half: float  # half the width (and height) of the shape's bounding box, pixels

    @property
    def prompt(self) -> str:
        return prompt_for(self.colour, self.shape)


def prompt_for(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def all_prompts() -> list[str]:
    return [prompt_for(c, s) for c in COLOURS for s in SHAPES]


def shape_polygon(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]] | None:
    """The outline of a square or (upright) triangle filling the box centred at (cx, cy); None for a circle."""
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}; the world has {', '.join(SHAPES)}")


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene as uint8 RGB [size, size, 3]."""
    s = SUPERSAMPLE
    image = Image.new("RGB", (size * s, size * s), BACKGROUND)
    draw = ImageDraw.Draw(image)
    colour = COLOURS[scene.colour]
    cx, cy, half = scene.cx * s, scene.cy * s, scene.half * s
    polygon = shape_polygon(scene.shape, cx, cy, half)
    if polygon is None:
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=colour)
    else:
        draw.polygon(polygon, fill=colour)
    return np.asarray(image.resize((size, size), Image.BOX))


def random_scene(rng: np.random.Generator, colour: str | None = None, shape: str | None = None) -> Scene:
    """A scene with the given (or a random) colour and shape, at a random size and position that fits."""
    colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    half = float(rng.uniform(*HALF_SIZE_RANGE))
    margin = half + 2
    cx, cy = (float(v) for v in rng.uniform(margin, IMAGE_SIZE - margin, size=2))
    return Scene(colour, shape, cx, cy, half)


def dataset(count: int, seed: int) -> tuple[np.ndarray, list[Scene]]:
    """``count`` scenes drawn from ``seed``: uint8 images [count, 64, 64, 3] and the scenes."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(count)]
    return np.stack([render(scene) for scene in scenes]), scenes
