"""Drawing the synthetic scenes of `libs.datasets.synthetic`: textured backgrounds, moving
shapes with their masks, and the files they are saved to.

Every random draw comes from the `numpy.random.Generator` passed in, so a seed fixes the
frames and masks bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

_SUBPIXEL = 4  # fixed-point bits for polygon rasterisation


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV in [0, 1] (arrays of one shape) -> RGB float [..., 3] in [0, 1]."""
    h = (h % 1.0) * 6.0
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((*np.shape(h), 3), dtype=np.float32)
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        out[sel] = np.stack([np.broadcast_to(r, h.shape)[sel], np.broadcast_to(g, h.shape)[sel],
                             np.broadcast_to(b, h.shape)[sel]], axis=-1)
    return out


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically."""
    gh, gw = max(2, height // cells), max(2, width // cells)
    grid = rng.random((gh, gw), dtype=np.float32)
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _background(rng: np.random.Generator, height: int, width: int, hue: float) -> np.ndarray:
    """A muted, textured RGB canvas (float [H, W, 3]) larger than a frame, for panning."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = 0.6 * _smooth_noise(rng, height, width, 12) + 0.4 * _smooth_noise(rng, height, width, 4)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6.0, 20.0)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    gradient = (xx / width) * rng.uniform(-0.3, 0.3) + (yy / height) * rng.uniform(-0.3, 0.3)
    value = np.clip(0.3 + 0.35 * noise + rng.uniform(0.0, 0.2) * stripes + gradient, 0.05, 0.95)
    hue_field = hue + 0.12 * (_smooth_noise(rng, height, width, 16) - 0.5)
    sat = np.clip(rng.uniform(0.08, 0.3) + 0.1 * (noise - 0.5), 0.0, 0.4)
    return _hsv_to_rgb(hue_field, sat, value)


def _shape_outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Unit-size outline (N x 2, around the origin, radius about 1) of a shape kind."""
    t = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    if kind == "ellipse":
        ratio = rng.uniform(0.45, 1.0)
        return np.stack([np.cos(t), ratio * np.sin(t)], axis=1)
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        if n > 4 and rng.random() < 0.5:
            radii[::2] *= rng.uniform(0.4, 0.7)  # a star-like, concave outline
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    radius = np.ones_like(t)
    for k in range(2, 6):
        radius += rng.uniform(-0.22, 0.22) / (k - 1) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    radius = np.clip(radius, 0.35, 1.5)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _raster(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Exact boolean mask of a polygon with float vertices (x, y)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    fixed = np.round(points * (1 << _SUBPIXEL)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL)
    return mask.astype(bool)


def _far_hue(rng: np.random.Generator, avoid: list[float], gap: float = 0.22) -> float:
    for _ in range(50):
        hue = float(rng.random())
        if all(min(abs(hue - a) % 1.0, 1 - abs(hue - a) % 1.0) >= gap for a in avoid):
            return hue
    return (avoid[0] + 0.5) % 1.0 if avoid else float(rng.random())


@dataclass
class _Mover:
    """A shape moving in frame coordinates (salient) or scene coordinates (distractor)."""

    outline: np.ndarray
    colour_hsv: tuple[float, float, float]
    size: float
    x: float
    y: float
    vx: float
    vy: float
    angle: float
    spin: float
    pulse: float
    bounce: bool
    stripe_angle: float
    stripe_period: float

    def polygon(self, t: int) -> np.ndarray:
        scale = self.size * (1.0 + self.pulse * math.sin(0.3 * t))
        a = self.angle + self.spin * t
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float64)
        return self.outline @ rot.T * scale + np.array([self.x, self.y])

    def step(self, height: int, width: int) -> None:
        self.x += self.vx
        self.y += self.vy
        if self.bounce:
            if not 0 <= self.x <= width:
                self.vx = -self.vx
                self.x = min(max(self.x, 0.0), float(width))
            if not 0 <= self.y <= height:
                self.vy = -self.vy
                self.y = min(max(self.y, 0.0), float(height))

    def paint(self, canvas: np.ndarray, mask: np.ndarray, t: int, origin: np.ndarray | None = None) -> None:
        """Draw the textured shape into `canvas` where `mask` is set.

        `origin`: where the canvas's top-left corner is in the shape's coordinates.
        """
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return
        ox, oy = (0.0, 0.0) if origin is None else (float(origin[0]), float(origin[1]))
        h, s, v = self.colour_hsv
        dx, dy = xs + ox - self.x, ys + oy - self.y
        u = dx * math.cos(self.stripe_angle) + dy * math.sin(self.stripe_angle)
        shade = 0.12 * np.sin(2 * math.pi * u / self.stripe_period + 0.2 * t)
        shade += 0.18 * (dy / max(self.size, 1.0))
        value = np.clip(v - shade, 0.05, 1.0).astype(np.float32)
        hue = np.full_like(value, h)
        sat = np.full_like(value, s)
        canvas[ys, xs] = _hsv_to_rgb(hue, sat, value)


def _salient(rng: np.random.Generator, height: int, width: int, hue: float, t_len: int) -> _Mover:
    side = min(height, width)
    size = side * rng.uniform(0.12, 0.28)
    speed = side * rng.uniform(0.01, 0.05)
    direction = rng.uniform(0, 2 * math.pi)
    leaves = rng.random() < 0.3
    if leaves:
        # start inside, head for the nearest border fast enough to cross it during the video
        x, y = width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7)
        speed = max(speed, 1.2 * side / max(t_len, 1))
    else:
        x, y = width * rng.uniform(0.25, 0.75), height * rng.uniform(0.25, 0.75)
    return _Mover(
        outline=_shape_outline(rng, str(rng.choice(["ellipse", "polygon", "blob"]))),
        colour_hsv=(hue, float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.55, 1.0))),
        size=size, x=x, y=y, vx=speed * math.cos(direction), vy=speed * math.sin(direction),
        angle=rng.uniform(0, 2 * math.pi), spin=rng.uniform(-0.08, 0.08), pulse=rng.uniform(0.0, 0.12),
        bounce=not leaves, stripe_angle=rng.uniform(0, math.pi), stripe_period=rng.uniform(4.0, 12.0),
    )


class Scene:
    """One video's world: background canvas, camera path, salient objects, distractors."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, length: int, still: bool = False):
        self.height, self.width = height, width
        bg_hue = float(rng.random())
        pan = 0.0 if still else min(height, width) * rng.uniform(0.0, 0.03)
        pan_dir = rng.uniform(0, 2 * math.pi)
        self.cam_v = (pan * math.cos(pan_dir), pan * math.sin(pan_dir))
        margin_x = int(abs(self.cam_v[0]) * length) + 2
        margin_y = int(abs(self.cam_v[1]) * length) + 2
        self.cam0 = (margin_x if self.cam_v[0] < 0 else 0, margin_y if self.cam_v[1] < 0 else 0)
        self.canvas = _background(rng, height + margin_y, width + margin_x, bg_hue)
        hues = [bg_hue]
        self.objects = []
        for _ in range(2 if rng.random() < 0.35 else 1):
            hue = _far_hue(rng, hues)
            hues.append(hue)
            self.objects.append(_salient(rng, height, width, hue, length))
        self.distractors = []
        if rng.random() < 0.5:
            d = _salient(rng, height, width, _far_hue(rng, [bg_hue], 0.1), length)
            d.colour_hsv = (d.colour_hsv[0], float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.3, 0.8)))
            d.vx = d.vy = d.spin = d.pulse = 0.0
            d.x += self.cam0[0]
            d.y += self.cam0[1]
            self.distractors.append(d)
        self.occluder = None
        if rng.random() < 0.4:
            thickness = min(height, width) * rng.uniform(0.06, 0.14)
            # a long band (a pole, a tree trunk) tilted from vertical, fixed in the scene
            centre = np.array([self.cam0[0] + width * rng.uniform(0.2, 0.8), self.cam0[1] + height / 2])
            tilt = rng.uniform(-0.5, 0.5)
            half_len = 1.5 * (height + width)
            corners = np.array([[-thickness / 2, -half_len], [thickness / 2, -half_len],
                                [thickness / 2, half_len], [-thickness / 2, half_len]])
            rot = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
            self.occluder = (corners @ rot.T + centre, float(rng.uniform(0.2, 0.9)))

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t: (RGB float [H, W, 3] in [0, 1], boolean salient mask [H, W])."""
        h, w = self.height, self.width
        cx = self.cam0[0] + self.cam_v[0] * t
        cy = self.cam0[1] + self.cam_v[1] * t
        ix, iy = int(round(cx)), int(round(cy))
        frame = self.canvas[iy:iy + h, ix:ix + w].copy()
        offset = np.array([ix, iy], dtype=np.float64)
        for d in self.distractors:
            d.paint(frame, _raster(d.polygon(0) - offset, h, w), 0, origin=offset)
        salient = np.zeros((h, w), dtype=bool)
        for obj in self.objects:
            obj_mask = _raster(obj.polygon(t), h, w)
            obj.paint(frame, obj_mask, t)
            salient |= obj_mask
        if self.occluder is not None:
            points, shade = self.occluder
            occ = _raster(points - offset, h, w)
            frame[occ] = self.canvas[iy:iy + h, ix:ix + w][occ] * 0.5 + 0.5 * shade
            salient &= ~occ
        return frame, salient

    def advance(self) -> None:
        for obj in self.objects:
            obj.step(self.height, self.width)


def to_uint8(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    noisy = frame * 255.0 + rng.normal(0.0, 3.0, frame.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def save_image(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=90)
    else:
        image.save(path, optimize=False, compress_level=6)


def save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, compress_level=6)
