"""Procedural renderer of the toy world: small RGB images of one shape, with captions and exact labels.

Each image is drawn at twice its size and box-filtered down, so edges and fine textures are
anti-aliased the way a camera would blur them. Everything is a pure function of (seed, index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

ATTRIBUTES = ("shape", "colour", "background", "position", "texture", "mark")


@dataclass(frozen=True)
class Scene:
    """Exact labels of one toy image."""

    shape: str
    colour: str
    background: str
    position: str
    texture: str
    mark: str
    cx: float
    cy: float
    radius: float

    def labels(self) -> dict[str, Any]:
        """The scene as a plain dict (JSON-serialisable)."""
        return asdict(self)


@lru_cache(maxsize=1)
def world_spec() -> dict[str, Any]:
    """The toy world's vocabulary and sampling probabilities (``world.yaml``)."""
    text = resources.files("t2i_unlearn.toy").joinpath("world.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def attribute_values(attribute: str) -> list[str]:
    """The values an attribute can take, in a fixed order (the class order of the judges)."""
    if attribute not in ATTRIBUTES:
        raise KeyError(f"unknown toy attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    return list(world_spec()[attribute].keys())


def concept_groups() -> dict[str, dict[str, Any]]:
    """The world's concept groups: ``{name: {"fix": {attribute: value}, "role": str}}`` in a fixed order."""
    return world_spec()["groups"]


_POSITIONS = {"center": (0.5, 0.5), "left": (0.3, 0.5), "right": (0.7, 0.5), "top": (0.5, 0.3), "bottom": (0.5, 0.7)}


def sample_scene(rng: np.random.Generator, **fixed: str) -> Scene:
    """Draw a random scene; keyword arguments fix attributes (e.g. ``texture="striped"``)."""
    spec = world_spec()
    probs = spec["probabilities"]
    values: dict[str, str] = {}
    for attr in ATTRIBUTES:
        if attr in fixed and fixed[attr] is not None:
            if fixed[attr] not in spec[attr]:
                raise KeyError(f"unknown {attr} {fixed[attr]!r}")
            values[attr] = fixed[attr]
            # Draw anyway so that fixing one attribute does not shift the others' random stream.
            rng.random()
            continue
        names = list(spec[attr].keys())
        if attr in probs:
            p = np.array([probs[attr][n] for n in names], dtype=float)
            values[attr] = names[int(rng.choice(len(names), p=p / p.sum()))]
        else:
            values[attr] = names[int(rng.integers(len(names)))]
    size = spec["image_size"]
    fx, fy = _POSITIONS[values["position"]]
    jitter = rng.uniform(-1.5, 1.5, size=2)
    radius = float(rng.uniform(0.2, 0.25) * size)
    return Scene(
        cx=float(fx * size + jitter[0]),
        cy=float(fy * size + jitter[1]),
        radius=radius,
        **values,
    )


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        h = r * 0.85
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.15
    if shape == "triangle":
        # Upward equilateral-ish triangle inscribed in the circle of radius r.
        top, base = cy - r, cy + r * 0.75
        half_width = (y - top) / (base - top) * r * 1.05
        return (y >= top) & (y <= base) & (np.abs(dx) <= half_width)
    raise KeyError(f"unknown shape {shape!r}")


def _segment_distance(x: np.ndarray, y: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    ax, ay = a
    bx, by = b
    vx, vy = bx - ax, by - ay
    t = np.clip(((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
    px, py = ax + t * vx, ay + t * vy
    return np.hypot(x - px, y - py)


def render_scene(
    scene: Scene,
    size: int | None = None,
    *,
    regions: list[tuple[tuple[float, float, float], str]] | None = None,
    texture_contrast: float = 0.3,
    stripe_period: float = 5.0,
    stripe_width: float = 2.0,
    texture_coverage: tuple[float, float, float] | None = None,
    blend: tuple[str, np.ndarray] | None = None,
    shading: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a scene as an ``uint8`` array of shape ``(size, size, 3)``.

    The keyword arguments draw the harder variants the judges train on (see :func:`render_judge_variant`):
    ``regions`` repaints parts of the shape in other colours (each ``((nx, ny, offset), colour)`` paints
    where ``nx * (x - cx) + ny * (y - cy) > offset * radius``, later regions over earlier ones), ``texture_contrast`` is the brightness of
    stripes and dots relative to the fill (0.3 in the data set; closer to 1 is fainter), ``stripe_period``
    and ``stripe_width`` are in pixels, and ``texture_coverage`` ``(nx, ny, offset)`` limits the texture to
    the part of the shape where ``nx * (x - cx) + ny * (y - cy) > offset * radius``. ``blend`` ``(colour,
    weight)`` mixes a second colour into the fill with a per-pixel weight in [0, 1] and ``shading`` multiplies
    the fill's brightness per pixel (both arrays at twice ``size``, the drawing resolution).
    """
    spec = world_spec()
    size = size or spec["image_size"]
    ss = 2  # supersampling factor
    n = size * ss
    coords = (np.arange(n, dtype=np.float32) + 0.5) / ss
    x, y = np.meshgrid(coords, coords)
    img = np.empty((n, n, 3), dtype=np.float32)
    img[:] = np.array(spec["background"][scene.background]["rgb"], dtype=np.float32)

    cx, cy, r = scene.cx, scene.cy, scene.radius
    inside = _shape_mask(scene.shape, x, y, cx, cy, r)
    fill = np.zeros((n, n, 3), dtype=np.float32) + np.array(spec["colour"][scene.colour]["rgb"], dtype=np.float32)
    for direction, name in regions or []:
        nx, ny, offset = direction
        part = nx * (x - cx) + ny * (y - cy) > offset * r
        fill[part] = np.array(spec["colour"][name]["rgb"], dtype=np.float32)
    if blend is not None:
        name, weight = blend
        fill += weight[..., None] * (np.array(spec["colour"][name]["rgb"], dtype=np.float32) - fill)
    if shading is not None:
        fill *= shading[..., None]
    img[inside] = fill[inside]
    textured = inside
    if texture_coverage is not None:
        nx, ny, offset = texture_coverage
        textured = inside & (nx * (x - cx) + ny * (y - cy) > offset * r)
    if scene.texture == "striped":
        stripes = np.mod(x + y, stripe_period) < stripe_width
        img[textured & stripes] = fill[textured & stripes] * texture_contrast
    elif scene.texture == "dotted":
        gx, gy = np.mod(x, 5.0) - 2.5, np.mod(y, 5.0) - 2.5
        dots = gx * gx + gy * gy <= 1.3**2
        img[textured & dots] = fill[textured & dots] * texture_contrast

    black = np.zeros(3, dtype=np.float32) + 15.0
    reach = r * 1.05
    if scene.mark == "crossed":
        d1 = _segment_distance(x, y, (cx - reach, cy - reach), (cx + reach, cy + reach))
        d2 = _segment_distance(x, y, (cx - reach, cy + reach), (cx + reach, cy - reach))
        img[np.minimum(d1, d2) <= 1.1] = black
    elif scene.mark == "circled":
        dist = np.hypot(x - cx, y - cy)
        ring_r = r * 1.3 + 1.0
        img[np.abs(dist - ring_r) <= 0.9] = black
    elif scene.mark == "barred":
        bar = (np.abs(y - cy) <= 1.6) & (np.abs(x - cx) <= reach + 1.5)
        img[bar] = black

    img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# Harder images the judges train on beside the data set, so that what a generator gets half right is
# still read right: a second or third colour, a blotchy blend or a dark fill is not a stripe, and faint,
# thin or partial stripes are.
JUDGE_VARIANTS = (
    "two_tone",
    "multi_colour",
    "blotchy",
    "dark",
    "faint_stripes",
    "thin_stripes",
    "partial_stripes",
    "faint_dots",
)
_PLAIN_VARIANTS = ("two_tone", "multi_colour", "blotchy", "dark")


def _smooth_field(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Random values in [0, 1] on a ``cells`` x ``cells`` grid, bilinearly stretched to ``n`` x ``n``."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0.0, cells, n)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # [n, cells + 1]
    return (rows[:, i] * (1 - f) + rows[:, i + 1] * f).astype(np.float32)


def _random_direction(rng: np.random.Generator) -> tuple[float, float]:
    # Half of the splits run along the stripes' own diagonal, the case a texture judge confuses most.
    angle = rng.choice([np.pi / 4, 3 * np.pi / 4]) if rng.random() < 0.5 else rng.uniform(0, 2 * np.pi)
    return float(np.cos(angle)), float(np.sin(angle))


def render_judge_variant(seed: int, index: int, kind: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One hard training image for the judges: ``(uint8 [H, W, 3], labels)``.

    ``kind`` is one of :data:`JUDGE_VARIANTS`. Two-tone, multi-colour, blotchy (a second colour blended in
    in smooth random blotches, brightness varying in blotches too) and dark (the fill at 25-60% of its
    brightness, unevenly) shapes are labelled plain, with a ``colour`` label of ``None`` (no single colour is
    right); the other kinds keep every label of their scene.
    """
    if kind not in JUDGE_VARIANTS:
        raise KeyError(f"unknown judge variant {kind!r}; known: {', '.join(JUDGE_VARIANTS)}")
    rng = np.random.default_rng([seed, JUDGE_VARIANTS.index(kind), index])
    colours = attribute_values("colour")
    if kind in _PLAIN_VARIANTS:
        scene = sample_scene(rng, texture="plain")
        others = [c for c in colours if c != scene.colour]
        rng.shuffle(others)
        labels = {**scene.labels(), "colour": None}
        n = 2 * world_spec()["image_size"]
        if kind == "blotchy":
            weight = np.clip((_smooth_field(rng, n, int(rng.integers(3, 7))) - 0.5) * rng.uniform(1.5, 4.0) + 0.5, 0, 1)
            shading = 1.0 - rng.uniform(0.0, 0.5) * _smooth_field(rng, n, int(rng.integers(2, 6)))
            return render_scene(scene, blend=(others[0], weight), shading=shading), labels
        if kind == "dark":
            shading = rng.uniform(0.25, 0.6) * (1.0 - 0.25 * _smooth_field(rng, n, int(rng.integers(2, 5))))
            return render_scene(scene, shading=shading), labels
        dx, dy = _random_direction(rng)
        if kind == "two_tone":
            regions = [((dx, dy, float(rng.uniform(-0.4, 0.4))), others[0])]
        else:
            regions = [((dx, dy, -0.3), others[0]), ((dx, dy, 0.3), others[1])]
        return render_scene(scene, regions=regions), labels
    if kind == "faint_dots":
        scene = sample_scene(rng, texture="dotted")
        return render_scene(scene, texture_contrast=float(rng.uniform(0.55, 0.8))), scene.labels()
    scene = sample_scene(rng, texture="striped")
    options: dict[str, Any] = {}
    if kind == "faint_stripes":
        options["texture_contrast"] = float(rng.uniform(0.55, 0.8))
    elif kind == "thin_stripes":
        options["stripe_period"] = float(rng.uniform(3.5, 5.0))
        options["stripe_width"] = float(rng.uniform(0.8, 1.3))
    else:
        dx, dy = _random_direction(rng)
        options["texture_coverage"] = (dx, dy, float(rng.uniform(-0.3, 0.3)))
    return render_scene(scene, **options), scene.labels()


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def caption_scene(scene: Scene, rng: np.random.Generator, **mention: float) -> str:
    """A random caption of a scene, using one phrasing per mentioned attribute.

    Keyword arguments override the world's mention probabilities, e.g. ``mention_colour=1.0``.
    """
    spec = world_spec()
    probs = {**spec["probabilities"], **mention}

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    before, after = "", ""
    tex = spec["texture"][scene.texture]
    if scene.texture != "plain" or rng.random() < probs["mention_plain"]:
        if rng.random() < 0.5 and any(tex["after"]):
            after = pick([p for p in tex["after"] if p])
        else:
            before = pick([p for p in tex["before"] if p])
    colour = pick(spec["colour"][scene.colour]["words"]) if rng.random() < probs["mention_colour"] else ""
    parts = [before, colour, pick(spec["shape"][scene.shape]), after]
    if scene.mark != "none":
        parts.append(pick(spec["mark"][scene.mark]))
    if rng.random() < probs["mention_position"]:
        parts.append(pick(spec["position"][scene.position]))
    if rng.random() < probs["mention_background"]:
        parts.append(f"on {_article_phrase(pick(spec['background'][scene.background]['words']))} background")
    words = " ".join(p for p in parts if p)
    subject = f"{_article(words)} {words}"
    return pick(spec["templates"]).format(subject=subject)


def _article_phrase(word: str) -> str:
    return f"{_article(word)} {word}"


def render_dataset(n: int, seed: int, start: int = 0, **fixed: str) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """Render images ``start .. start+n-1`` of the stream defined by ``seed``.

    Returns ``(images uint8 [n, H, W, 3], captions, labels)``. Image ``i`` depends only on
    ``(seed, i)``, so a data set can be rendered in chunks and resumed.
    """
    images, captions, labels = [], [], []
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        scene = sample_scene(rng, **fixed)
        images.append(render_scene(scene))
        captions.append(caption_scene(scene, rng))
        labels.append(scene.labels())
    return np.stack(images), captions, labels


def vocabulary_words() -> list[str]:
    """Every phrase the captions can use, for building the tokenizer's corpus."""
    spec = world_spec()
    words: list[str] = []
    for attr in ("shape", "position", "mark"):
        for options in spec[attr].values():
            words.extend(options)
    for attr in ("colour", "background"):
        for entry in spec[attr].values():
            words.extend(entry["words"])
    for entry in spec["texture"].values():
        words.extend(entry["before"] + entry["after"])
    words.extend(t.replace("{subject}", "") for t in spec["templates"])
    words.extend(["a", "an", "on", "background"])
    return [w for w in words if w.strip()]
