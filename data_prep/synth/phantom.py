"""A procedural chest radiograph: anatomy, findings and noise, fast enough to write datasets with.

`render_chest_radiograph` draws a frontal chest film as a 2-D uint8 MONOCHROME2 image
(0 = black = air, 255 = white = bone) and returns the bounding boxes of the lung opacities it
drew, in the torchvision contract: float32 [N, 4] xyxy pixels of the returned image, (0, 4)
when there are none.

Why it is fast: everything smooth (body, lungs, heart, bones, vessels, findings) is composed as
an attenuation map at a low resolution (256-384 px on the long side), mapped to
intensity with a per-image exposure, upscaled once with cv2 and only then given
full-resolution quantum noise.

Coordinates ("thorax units"): X = 0 on the patient's midline, X = -1 / +1 near the image-left /
image-right rib cage; Y = 0 at the lung apices, Y = 1 near the costophrenic angles, Y grows
downwards. The patient's right lung is on the image left and the heart bulges to the image
right, as on a PA film. The thorax frame is tilted by a few degrees per image.

Determinism and the opacity ablation: `rng` is consumed by exactly one call
(`rng.integers(.., size=5)`) which seeds independent streams for the anatomy, the opacities,
the other findings, the noise and the texture. Rendering twice from the same `rng` state with
`opacities=k` and with `opacities=0` gives the same anatomy and the same noise: the difference
of the two images is the opacities alone (the tests check the boxes this way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

# Smooth structure is rendered at half the long side, within these bounds (never above the
# image size), then upscaled once: 1024 px -> 384, 640 -> 320, 128 -> 128.
_LOW_RES_MIN_PX = 256
_LOW_RES_MAX_PX = 384
# A box is the bounding box of the region where one opacity's alpha exceeds this fraction of its peak.
BOX_ALPHA_FRACTION = 0.3

PATTERNS: tuple[str, ...] = ("none", "bacterial", "viral")
# Abnormalities that are not lung opacities (RSNA "No Lung Opacity / Not Normal").
NOT_OPACITY_FINDINGS: tuple[str, ...] = ("effusion", "cardiomegaly", "nodule", "device", "hyperinflation")
MAX_OPACITIES = 8

# `subtlety` = 1 multiplies a pattern's density by 1 - U(lo, hi): consolidation 0.3-0.42 becomes
# about 0.05-0.19, of the order of a rib's or a vessel's contrast; viral streaks 0.1-0.15 become
# 0.03-0.1, a texture a little above the parenchyma's own mottling.
_SUBTLE_CONSOLIDATION_CUT = (0.55, 0.85)
_SUBTLE_INTERSTITIAL_CUT = (0.35, 0.7)
# `nuisance` = 1: how often a film has each label-free extra (scaled down with `nuisance`)
_DEVICE_PROB = 0.2  # ECG leads, lines, tubes: common on sick and well children alike
_OVERLAP_PROB = 0.4
_SHUTTER_PROB = 0.35
_MARKER_PROB = 0.85
_TEXT_PROB = 0.5

# Real RSNA box sizes as fractions of the 1024-px image: widths 40-528 (median 217),
# heights 45-942 (median 298). Opacities are sized from these (lognormal around the medians).
_BOX_W_MEDIAN, _BOX_W_RANGE = 217 / 1024, (40 / 1024, 528 / 1024)
_BOX_H_MEDIAN, _BOX_H_RANGE = 298 / 1024, (45 / 1024, 942 / 1024)


@dataclass(frozen=True)
class _Anatomy:
    """Per-image parameters: the frame in image-height units, the anatomy in thorax units."""

    center_u: float  # thorax midline, image-height units right of the image centre
    apex_v: float  # lung apices, image-height units from the top
    thorax_w: float  # image-height units per thorax X unit
    thorax_h: float  # image-height units per thorax Y unit
    tilt_rad: float  # patient rotation in the image plane
    lung_cx: float  # lung ellipses: centres (+-lung_cx, lung_cy), radii (lung_rx, lung_ry)
    lung_cy: float
    lung_rx: float
    lung_ry: float
    mediastinum_half: float  # medial lung border |X| at the top
    dome_right: float  # diaphragm dome tops (Y); the patient's right (image left) is higher
    dome_left: float
    dome_depth: float  # how far the costophrenic angles lie below the dome tops
    heart_cx: float
    heart_cy: float
    heart_rx: float
    heart_ry: float
    heart_angle_rad: float
    lung_air: float  # how much less attenuating than the midline soft tissue aerated lung is
    bone_density: float
    rib_spacing: float
    rib_first_y: float
    gastric_bubble: bool
    child: bool
    background: float  # exposure: display level of air outside the body
    white: float  # display level of the densest soft tissue
    gamma: float
    gradient_x: float
    gradient_y: float
    lowfreq_amp: float
    noise_sigma: float
    vessel_gain: float = 1.0  # lung markings' density; varies between normal films under `nuisance`


def _sample_anatomy(rng: np.random.Generator, aspect_w_over_h: float, child: bool) -> _Anatomy:
    if child:
        thorax_w = rng.uniform(0.26, 0.32)
        thorax_h = rng.uniform(0.36, 0.43)
        apex_v = rng.uniform(0.15, 0.24)
        heart_scale = rng.uniform(1.05, 1.18)  # a child's heart is relatively larger
    else:
        thorax_w = rng.uniform(0.34, 0.4)
        thorax_h = rng.uniform(0.54, 0.62)
        apex_v = rng.uniform(0.08, 0.15)
        heart_scale = rng.uniform(0.9, 1.06)
    # keep the thorax inside narrow (portrait) frames
    thorax_w = min(thorax_w, 0.4 * aspect_w_over_h)
    dome_right = rng.uniform(0.8, 0.87)
    return _Anatomy(
        center_u=rng.normal(0.0, 0.012),
        apex_v=apex_v,
        thorax_w=thorax_w,
        thorax_h=thorax_h,
        tilt_rad=math.radians(rng.normal(0.0, 1.8)),
        lung_cx=rng.uniform(0.5, 0.55),
        lung_cy=rng.uniform(0.72, 0.78),
        lung_rx=rng.uniform(0.42, 0.47),
        lung_ry=rng.uniform(0.76, 0.82),
        mediastinum_half=rng.uniform(0.09, 0.13),
        dome_right=dome_right,
        dome_left=dome_right + rng.uniform(0.02, 0.06),
        dome_depth=rng.uniform(0.14, 0.22),
        heart_cx=rng.uniform(0.12, 0.18),
        heart_cy=rng.uniform(0.64, 0.7),
        heart_rx=0.42 * heart_scale,
        heart_ry=0.23 * heart_scale,
        heart_angle_rad=math.radians(rng.uniform(15.0, 28.0)),
        lung_air=rng.uniform(0.5, 0.6),
        bone_density=rng.uniform(0.09, 0.13) * (0.75 if child else 1.0),
        rib_spacing=rng.uniform(0.095, 0.107),
        rib_first_y=rng.uniform(-0.04, 0.02),
        gastric_bubble=bool(rng.random() < 0.6),
        child=child,
        background=rng.uniform(0.0, 0.05),
        white=rng.uniform(0.84, 0.95),
        gamma=rng.uniform(0.85, 1.25),
        gradient_x=rng.normal(0.0, 0.04),
        gradient_y=rng.normal(0.0, 0.05),
        lowfreq_amp=rng.uniform(0.015, 0.04),
        noise_sigma=rng.uniform(0.006, 0.02),
    )


def _vary_anatomy(rng: np.random.Generator, a: _Anatomy, aspect_w_over_h: float, nuisance: float) -> _Anatomy:
    """Spread the label-free variation of a film by `nuisance` (0 = as sampled, 1 = a real set's spread).

    Body size and magnification, off-centre and rotated positioning, inspiration depth, exposure,
    processing and the density of the normal lung markings: all vary between real films as much
    as a subtle finding changes them, and none of it says anything about the label.
    """
    n = float(nuisance)
    scale = math.exp(rng.normal(0.0, 0.11 * n))  # body size and source-film distance
    thorax_w = min(a.thorax_w * scale * math.exp(rng.normal(0.0, 0.05 * n)), 0.4 * aspect_w_over_h)
    thorax_h = a.thorax_h * scale * math.exp(rng.normal(0.0, 0.05 * n))
    apex_v = float(np.clip(a.apex_v + rng.normal(0.0, 0.04 * n), 0.05, 0.95 - thorax_h))
    inspiration = rng.normal(0.0, 0.04 * n)  # a shallow breath raises the domes and crowds the markings
    return replace(
        a,
        thorax_w=thorax_w,
        thorax_h=thorax_h,
        apex_v=apex_v,
        center_u=a.center_u + rng.normal(0.0, 0.045 * n),
        tilt_rad=a.tilt_rad + math.radians(rng.normal(0.0, 4.0 * n)),
        dome_right=a.dome_right - inspiration,
        dome_left=a.dome_left - inspiration,
        heart_rx=a.heart_rx * math.exp(rng.normal(0.0, 0.08 * n)),
        lung_air=a.lung_air * math.exp(rng.normal(0.0, 0.12 * n)),
        background=a.background + rng.uniform(0.0, 0.1 * n),
        white=float(np.clip(a.white + rng.normal(0.0, 0.04 * n), 0.7, 1.0)),
        gamma=a.gamma * math.exp(rng.normal(0.0, 0.18 * n)),
        gradient_x=a.gradient_x + rng.normal(0.0, 0.08 * n),
        gradient_y=a.gradient_y + rng.normal(0.0, 0.08 * n),
        lowfreq_amp=a.lowfreq_amp + rng.uniform(0.0, 0.04 * n),
        noise_sigma=a.noise_sigma * math.exp(rng.uniform(0.0, 0.6 * n)),
        vessel_gain=math.exp(rng.normal(0.0, 0.3 * n)),
    )


class _Frame:
    """The low-resolution canvas and the mapping between thorax units and its pixels."""

    def __init__(self, a: _Anatomy, height_px: int, width_px: int) -> None:
        long_side = max(height_px, width_px)
        low_res = min(long_side, max(_LOW_RES_MIN_PX, min(_LOW_RES_MAX_PX, long_side // 2)))
        scale = low_res / long_side
        self.h = max(8, int(round(height_px * scale)))
        self.w = max(8, int(round(width_px * scale)))
        self.aspect = width_px / height_px
        self.a = a
        self.cos = math.cos(a.tilt_rad)
        self.sin = math.sin(a.tilt_rad)
        self.pivot_v = a.apex_v + 0.5 * a.thorax_h  # the tilt turns the thorax about its middle
        u = (np.arange(self.w, dtype=np.float32) + 0.5) / self.w * self.aspect - self.aspect / 2
        v = (np.arange(self.h, dtype=np.float32) + 0.5) / self.h
        du = u[None, :] - a.center_u
        dv = v[:, None] - self.pivot_v
        self.X = ((self.cos * du + self.sin * dv) / a.thorax_w).astype(np.float32)
        self.Y = ((-self.sin * du + self.cos * dv + self.pivot_v - a.apex_v) / a.thorax_h).astype(np.float32)
        self.px_per_y = max(a.thorax_h * self.h, 1.0)  # low-res pixels per thorax Y unit
        self.px_per_x = max(a.thorax_w * self.h, 1.0)

    def to_px(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Thorax coordinates -> low-res pixel coordinates (x, y) stacked on the last axis."""
        a = self.a
        ur = np.asarray(X, dtype=np.float64) * a.thorax_w
        vr = np.asarray(Y, dtype=np.float64) * a.thorax_h + a.apex_v - self.pivot_v
        du = self.cos * ur - self.sin * vr
        dv = self.sin * ur + self.cos * vr
        x = (du + a.center_u + self.aspect / 2) / self.aspect * self.w - 0.5
        y = (dv + self.pivot_v) * self.h - 0.5
        return np.stack([x, y], axis=-1)

    def patch(
        self, x_range: tuple[float, float], y_range: tuple[float, float]
    ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
        """(window, X, Y) restricted to the canvas window covering a thorax-coordinate rectangle."""
        win = self.window(x_range, y_range)
        return win, self.X[win], self.Y[win]

    def window(
        self, x_range: tuple[float, float], y_range: tuple[float, float], margin_px: int = 2
    ) -> tuple[slice, slice]:
        """(rows, cols) slices of the low-res canvas covering a thorax-coordinate rectangle."""
        corners = self.to_px(
            np.array([x_range[0], x_range[1], x_range[0], x_range[1]]),
            np.array([y_range[0], y_range[0], y_range[1], y_range[1]]),
        )
        c0 = int(np.clip(np.floor(corners[:, 0].min()) - margin_px, 0, self.w))
        c1 = int(np.clip(np.ceil(corners[:, 0].max()) + margin_px + 1, 0, self.w))
        r0 = int(np.clip(np.floor(corners[:, 1].min()) - margin_px, 0, self.h))
        r1 = int(np.clip(np.ceil(corners[:, 1].max()) + margin_px + 1, 0, self.h))
        return slice(r0, r1), slice(c0, c1)


def _step(distance: np.ndarray, soft_px: float, px_per_unit: float) -> np.ndarray:
    """Soft inside-indicator of `distance` > 0 (thorax units), its edge ~soft_px low-res pixels wide.

    A logistic step written with tanh (no overflow), in place on one float32 temporary.
    """
    z = np.multiply(distance, np.float32(0.5 * px_per_unit / max(soft_px, 0.3)), dtype=np.float32)
    np.tanh(z, out=z)
    z *= np.float32(0.5)
    z += np.float32(0.5)
    return z


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; large sigmas are done on a downscaled copy (same look, a fraction of the time)."""
    if sigma_px <= 0.3:
        return img
    if sigma_px <= 3.0:
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma_px, sigmaY=sigma_px, borderType=cv2.BORDER_REFLECT)
    f = sigma_px / 2.0
    h, w = img.shape
    small = cv2.resize(img, (max(2, int(round(w / f))), max(2, int(round(h / f)))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=2.0, sigmaY=2.0, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell_px: float) -> np.ndarray:
    """A smooth random field with correlation length ~cell_px, unit std: coarse noise upscaled with cubic interpolation."""
    cell_px = max(cell_px, 1.0)
    base = rng.standard_normal((max(2, int(h / cell_px) + 2), max(2, int(w / cell_px) + 2)), dtype=np.float32)
    up = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    std = float(up[::3, ::3].std())  # a subsample estimates it well enough
    if std > 0:
        up *= np.float32(1.0 / std)
    return up


def _draw_polylines(
    canvas: np.ndarray, frame: _Frame, curves: list[np.ndarray] | np.ndarray, thickness_y: float, value: int
) -> None:
    """Draw curves given in thorax coordinates (n curves of K points: [n, K, 2] X, Y) on a uint8 canvas, antialiased."""
    if len(curves) == 0:
        return
    shift = 4  # sub-pixel precision: coordinates in 1/16 pixel
    stacked = np.asarray(curves, dtype=np.float64)  # [n, K, 2]: one transform for all curves
    pts = list(np.round(frame.to_px(stacked[..., 0], stacked[..., 1]) * (1 << shift)).astype(np.int32))
    thickness = max(1, int(round(thickness_y * frame.px_per_y)))
    cv2.polylines(canvas, pts, False, int(value), thickness=thickness, lineType=cv2.LINE_AA, shift=shift)


def _ellipse_field(
    X: np.ndarray, Y: np.ndarray, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0
) -> np.ndarray:
    """((x'/rx)^2 + (y'/ry)^2) in the ellipse's frame: < 1 inside, 1 on the border."""
    dx, dy = X - cx, Y - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / rx) ** 2 + (dy / ry) ** 2


def _inside_ellipse(
    frame: _Frame, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, soft_px: float = 1.2
) -> np.ndarray:
    """Soft mask (full canvas) of an ellipse, its edge ~soft_px low-res pixels wide, evaluated in its window only."""
    out = np.zeros((frame.h, frame.w), np.float32)
    r = max(rx, ry) * 1.2 + 0.05
    rows, cols = frame.window((cx - r, cx + r), (cy - r, cy + r))
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return out
    f = _ellipse_field(frame.X[rows, cols], frame.Y[rows, cols], cx, cy, rx, ry, angle)
    # near the border, 1 - f ~ 2 * distance / radius
    out[rows, cols] = _step((1.0 - f) * (0.5 * min(rx, ry)), soft_px, frame.px_per_y)
    return out


# ----------------------------------------------------------------------------- normal anatomy


def _lung_masks(frame: _Frame, a: _Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks (0..1) of the image-left (patient right) and image-right (patient left) lungs."""
    wobble_full = _smooth_noise(rng, frame.h, frame.w, frame.h / 8) * np.float32(0.03)
    masks = []
    for side in (-1.0, 1.0):
        mask = np.zeros((frame.h, frame.w), np.float32)
        outer = a.lung_cx + a.lung_rx + 0.1
        rows, cols = frame.window((min(0.0, side * outer), max(0.0, side * outer)), (a.lung_cy - a.lung_ry - 0.1, 1.5))
        X, Y, wobble = frame.X[rows, cols], frame.Y[rows, cols], wobble_full[rows, cols]
        f = _ellipse_field(X, Y, side * a.lung_cx, a.lung_cy, a.lung_rx, a.lung_ry) + wobble
        in_ellipse = _step((1.0 - f) * 0.5 * a.lung_rx, 1.2, frame.px_per_y)
        dome_top = a.dome_right if side < 0 else a.dome_left
        # the dome is highest about mid-lung and falls to the costophrenic angle laterally
        # (steeply: a sharp angle) and to the cardiophrenic angle medially
        t = (side * X - (a.lung_cx - 0.05)) / a.lung_rx
        dome = dome_top + a.dome_depth * np.where(t > 0, np.clip(t, 0, 1.3) ** 2, 0.4 * np.clip(-t, 0, 1.3) ** 2)
        below_dome = _step(dome - Y, 1.0, frame.px_per_y)
        medial = a.mediastinum_half + 0.06 * np.clip(Y - 0.5, 0, None)
        lateral_of_mediastinum = _step(side * X - medial, 1.5, frame.px_per_x)
        mask[rows, cols] = in_ellipse * below_dome * lateral_of_mediastinum
        masks.append(mask)
    return masks[0], masks[1]


def _rib_curves(a: _Anatomy, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(posterior ribs, anterior ribs, clavicles) as polylines in thorax coordinates."""
    posterior: list[np.ndarray] = []
    anterior: list[np.ndarray] = []
    t = np.linspace(0.0, 1.0, 16)
    rise = (t / 0.25) * np.exp(1.0 - t / 0.25)  # peaks at t = 0.25: up and out from the spine
    for side in (-1.0, 1.0):
        for i in range(10):
            y0 = a.rib_first_y + i * a.rib_spacing * (1.0 + 0.025 * i) + rng.normal(0, 0.005)
            rel = np.clip((y0 + 0.12 - a.lung_cy) / a.lung_ry, -0.97, 0.97)
            reach = max(a.lung_cx + a.lung_rx * math.sqrt(1.0 - rel * rel) + 0.05, 0.3)
            xs = side * (0.06 + (reach - 0.06) * t)
            ys = y0 - (0.05 + 0.01 * i) * rise + (0.2 - 0.012 * i) * t**2.5
            posterior.append(np.stack([xs, ys], axis=1))
        for i in range(7):
            # anterior ribs start at the lateral wall and slope down towards the sternum
            y0 = a.rib_first_y + 0.12 + i * a.rib_spacing * 1.05
            rel = np.clip((y0 - a.lung_cy) / a.lung_ry, -0.97, 0.97)
            reach = a.lung_cx + a.lung_rx * math.sqrt(1.0 - rel * rel)
            xs = side * (reach - (reach - 0.3) * t)
            ys = y0 + 0.1 * t + 0.1 * t**2
            anterior.append(np.stack([xs, ys], axis=1))
    clavicles = []
    tt = np.linspace(0.0, 1.0, 16)
    for side in (-1.0, 1.0):
        xs = side * (0.1 + 0.85 * tt)
        ys = a.rib_first_y + 0.02 - 0.12 * tt + 0.025 * np.sin(2 * np.pi * tt) + rng.normal(0, 0.01)
        clavicles.append(np.stack([xs, ys], axis=1))
    return posterior, anterior, clavicles


def _branching_tree(
    rng: np.random.Generator,
    origin: tuple[float, float],
    side: float,
    n_main: int,
    length: float,
    depth: int,
    spread_deg: float = 160.0,
    center_deg: float = 0.0,
) -> list[np.ndarray]:
    """A branching tree from `origin` (thorax coordinates): one [n, 3, 2] array of polylines per generation.

    Angle 0 points laterally (towards `side`); Y steps are scaled by 0.7 so that branches look
    about isotropic on the film (a thorax Y unit is ~1.5 X units long).
    """
    ang = np.radians(center_deg + np.linspace(-spread_deg / 2, spread_deg / 2, n_main) + rng.normal(0, 10, n_main))
    ln = length * rng.uniform(0.8, 1.2, n_main)
    x0 = np.full(n_main, origin[0])
    y0 = np.full(n_main, origin[1])
    levels = []
    for _ in range(depth):
        bend = rng.normal(0, 0.2, ang.size)
        xm, ym = x0 + side * np.cos(ang) * ln * 0.5, y0 + np.sin(ang) * ln * 0.35
        x1, y1 = x0 + side * np.cos(ang + bend) * ln, y0 + np.sin(ang + bend) * ln * 0.7
        levels.append(np.stack([np.stack([x0, y0], -1), np.stack([xm, ym], -1), np.stack([x1, y1], -1)], axis=1))
        fork = np.radians(rng.uniform(12, 32, (2, ang.size)))
        ang = np.concatenate([ang + bend - fork[0], ang + bend + fork[1]])
        ln = np.concatenate([ln, ln]) * rng.uniform(0.6, 0.8, 2 * ln.size)
        x0, y0 = np.concatenate([x1, x1]), np.concatenate([y1, y1])
    return levels


def _anatomy_attenuation(
    frame: _Frame, a: _Anatomy, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(attenuation map, image-left lung mask, image-right lung mask, mediastinal mask) at low resolution.

    The mediastinal mask (heart, aortic knob, descending aorta; 0..1) marks where those hide the lung.

    Attenuation scale: 0 = air, 1 = the full thickness of soft tissue in the midline
    (mediastinum, abdomen); aerated lung ~0.35-0.45, the chest wall ~0.6, bone adds ~0.1.
    """
    X, Y = frame.X, frame.Y
    h, w = frame.h, frame.w
    py = frame.px_per_y

    # Body: neck, round shoulders, chest wall; thicker in the middle.
    neck = 0.34 if a.child else 0.3
    rise = np.clip((Y + 0.5) * np.float32(1 / 0.42), 0, 1)
    body_half = neck + (1.22 - neck) * np.sqrt(rise * (2 - rise))
    if a.child:  # barrel chest, protuberant abdomen
        body_half += 0.08 * np.clip(Y - 0.4, 0, 1.2)
    else:
        body_half -= 0.05 * np.clip(Y - 0.9, 0, 1)
    body = _step(body_half - np.abs(X), 2.0, frame.px_per_x)
    thickness = np.sqrt(np.clip(1.0 - (X / np.maximum(body_half, 0.2)) ** 2, 0, 1))
    att = body * (0.22 + 0.78 * thickness)

    if a.child:  # a child is held with the arms raised beside the head
        canvas = np.zeros((h, w), np.uint8)
        bone = np.zeros((h, w), np.uint8)
        for side in (-1.0, 1.0):
            arm = np.array([[[side * 1.0, -0.1], [side * 1.15, -0.5], [side * 1.1, -1.0], [side * 0.95, -2.0]]])
            _draw_polylines(canvas, frame, arm, 0.38, 255)
            _draw_polylines(bone, frame, arm + [side * 0.02, 0.0], 0.09, 255)
        arms = _blur(canvas.astype(np.float32) * np.float32(1 / 255), 1.5) * (1 - body)
        arms *= 0.7 + 0.3 * arms  # rounder limb profile
        att += 0.55 * arms + 1.2 * a.bone_density * _blur(bone.astype(np.float32) * np.float32(1 / 255), 1.0) * arms
    if not a.child:
        for side in (-1.0, 1.0):  # humeral heads in the top corners
            att += a.bone_density * 1.3 * _inside_ellipse(frame, side * 1.2, -0.22, 0.12, 0.1, soft_px=1.5)

    lung_r, lung_l = _lung_masks(frame, a, rng)
    lungs = lung_r + lung_l

    # Heart, aortic knob, descending aorta: they hide lung (they do not add to the soft tissue).
    heart = _inside_ellipse(frame, a.heart_cx, a.heart_cy, a.heart_rx, a.heart_ry, a.heart_angle_rad, soft_px=1.2)
    knob = _inside_ellipse(frame, 0.15, 0.27, 0.1, 0.075, soft_px=1.2)
    hidden = heart + knob
    win, Xw, Yw = frame.patch((0.0, 0.25), (0.2, 1.1))
    hidden[win] += 0.6 * _step(0.05 - np.abs(Xw - 0.12), 1.5, frame.px_per_x) * _step(Yw - 0.3, 2.0, py)
    np.clip(hidden, 0, 1, out=hidden)

    # Aerated lung is thickest (darkest) in its middle, thinner at the borders and apices;
    # the parenchyma is finely mottled.
    depth = _blur(lungs, 0.07 * py)
    depth *= np.float32(1.0 / max(float(depth.max()), 1e-6))
    mottle = _smooth_noise(rng, h, w, 3.0)
    att -= a.lung_air * lungs * (0.62 + 0.38 * depth + 0.025 * mottle) * (1.0 - 0.8 * hidden)
    att += 0.03 * heart

    # Spine behind the mediastinum (faint vertebral bodies); trachea and main bronchi (air).
    win, Xw, Yw = frame.patch((-0.12, 0.12), (-0.5, 3.0))
    spine = _step(0.07 - np.abs(Xw), 1.2, frame.px_per_x) * _step(Yw + 0.3, 3.0, py)
    vert = 0.8 + 0.2 * np.cos(np.float32(np.pi / (a.rib_spacing * 0.95)) * (Yw - rng.uniform(0, 1))) ** 2
    att[win] += a.bone_density * 0.45 * spine * vert
    # line layers (uint8 canvases, drawn antialiased): airway, vessels, bones
    airway = np.zeros((h, w), np.uint8)
    vessels = np.zeros((h, w), np.uint8)
    bones = np.zeros((h, w), np.uint8)
    cy = rng.uniform(0.25, 0.32)
    _draw_polylines(airway, frame, np.array([[[0.0, -0.6], [0.0, -0.1], [0.01, cy]]]), 0.07, 255)
    _draw_polylines(
        airway,
        frame,
        np.array(
            [[[0.01, cy], [-0.14, cy + 0.1], [-0.22, cy + 0.18]], [[0.01, cy], [0.13, cy + 0.08], [0.22, cy + 0.13]]]
        ),
        0.04,
        200,
    )

    # Hila and lung markings: branching vessels from the hila, thinning towards the periphery.
    for side, hy in ((-1.0, 0.5), (1.0, 0.45)):
        win, Xw, Yw = frame.patch((side * 0.24 - 0.25, side * 0.24 + 0.25), (hy - 0.35, hy + 0.35))
        hilum = np.exp(-(((Xw - side * 0.24) * np.float32(1 / 0.07)) ** 2 + ((Yw - hy) * np.float32(1 / 0.1)) ** 2))
        att[win] += 0.09 * hilum * (lung_r if side < 0 else lung_l)[win]
        levels = _branching_tree(rng, (side * 0.2, hy), side, n_main=10, length=0.17, depth=4, spread_deg=200)
        for lvl, segs in enumerate(levels):
            _draw_polylines(vessels, frame, segs, 0.018 * 0.72**lvl, int(255 * 0.82**lvl))

    # Bones: posterior ribs with bright cortical edges, fainter anterior ribs, clavicles.
    posterior, anterior, clavicles = _rib_curves(a, rng)
    rib_t = 0.046
    _draw_polylines(bones, frame, anterior, rib_t * 0.75, 80)
    _draw_polylines(bones, frame, posterior, rib_t, 255)
    _draw_polylines(bones, frame, posterior, rib_t * 0.55, 205)
    _draw_polylines(bones, frame, clavicles, rib_t * 1.1, 255)
    _draw_polylines(bones, frame, clavicles, rib_t * 0.5, 190)
    layers = cv2.GaussianBlur(cv2.merge([airway, vessels, bones]), (0, 0), sigmaX=0.7).astype(np.float32)
    layers *= np.float32(1 / 255)
    airway_f, vessels_f, bone_f = layers[..., 0], layers[..., 1], layers[..., 2]
    att -= 0.1 * airway_f
    att += (0.16 * a.vessel_gain) * vessels_f * lungs * (1 - hidden)
    cage = _step(1.08 - np.abs(X), 3.0, frame.px_per_x) * _step(1.05 - Y, 4.0, py)
    att += a.bone_density * bone_f * cage * (0.45 + 0.55 * np.clip(lungs * 1.2, 0, 1)) * (1 - 0.7 * hidden)

    if a.gastric_bubble:
        gy = a.dome_left + 0.08 + rng.uniform(0.0, 0.06)
        bubble = _inside_ellipse(
            frame, rng.uniform(0.35, 0.5), gy, rng.uniform(0.1, 0.16), rng.uniform(0.05, 0.07), soft_px=1.5
        )
        att -= 0.2 * bubble * (1 - lungs)
    return att.astype(np.float32, copy=False), lung_r, lung_l, hidden


# ----------------------------------------------------------------------------- findings


def _lung_points(
    rng: np.random.Generator, frame: _Frame, lung: np.ndarray, n: int, y_range: tuple[float, float]
) -> list[tuple[float, float]]:
    """n random points (thorax coordinates) well inside a lung (mask > 0.8) within a band of Y."""
    m = (lung > 0.8) & (frame.Y >= y_range[0]) & (frame.Y <= y_range[1])
    idx = np.flatnonzero(m)
    if idx.size == 0:
        idx = np.flatnonzero(lung > 0.5)
    if idx.size == 0:
        idx = np.array([int(np.argmax(lung))])
    pick = rng.choice(idx, size=n)
    return [(float(frame.X.flat[k]), float(frame.Y.flat[k])) for k in pick]


def _opacity_alpha(
    rng: np.random.Generator,
    frame: _Frame,
    lung: np.ndarray,
    center: tuple[float, float],
    size_w: float,
    size_h: float,
    texture: np.ndarray,
) -> np.ndarray:
    """Alpha (0..1, peak 1) of one airspace opacity: a union of gaussian blobs, textured, clipped to the lung.

    size_w, size_h: the intended extent in image-height units.
    """
    a = frame.a
    # the alpha > 0.3 region of the blob union is ~2/3 of the spread: calibrated so that box sizes
    # match the RSNA medians (217 x 298 px of 1024)
    half_w = 0.5 * 1.65 * size_w / a.thorax_w
    half_h = 0.5 * 1.45 * size_h / a.thorax_h
    alpha = np.zeros_like(frame.X)
    rows, cols = frame.window(
        (center[0] - 1.6 * half_w, center[0] + 1.6 * half_w), (center[1] - 1.6 * half_h, center[1] + 1.6 * half_h)
    )
    X, Y = frame.X[rows, cols], frame.Y[rows, cols]
    acc = np.zeros_like(X)
    for _ in range(int(rng.integers(3, 7))):
        bx = center[0] + rng.uniform(-0.4, 0.4) * half_w
        by = center[1] + rng.uniform(-0.4, 0.4) * half_h
        sx = half_w * rng.uniform(0.3, 0.48)
        sy = half_h * rng.uniform(0.3, 0.48)
        acc = np.maximum(acc, rng.uniform(0.75, 1.0) * np.exp(-0.5 * (((X - bx) / sx) ** 2 + ((Y - by) / sy) ** 2)))
    # patchy, fluffy density: the texture modulates it strongly, the lung border clips it
    acc = acc * (0.45 + 0.55 * texture[rows, cols]) * np.clip(lung[rows, cols] * 1.15, 0, 1)
    alpha[rows, cols] = acc
    peak = float(alpha.max())
    return (alpha / peak).astype(np.float32) if peak > 0 else alpha


def _sample_box_size(rng: np.random.Generator) -> tuple[float, float]:
    """(width, height) of an opacity in image-height units, distributed like RSNA's boxes on a square image."""
    w = float(np.clip(_BOX_W_MEDIAN * math.exp(rng.normal(0, 0.35)), *_BOX_W_RANGE))
    h = float(np.clip(_BOX_H_MEDIAN * math.exp(rng.normal(0, 0.38)), *_BOX_H_RANGE))
    return w, h


def _opacity_alphas(
    rng: np.random.Generator, frame: _Frame, lung_r: np.ndarray, lung_l: np.ndarray, n: int, texture: np.ndarray
) -> list[np.ndarray]:
    """Alpha maps of n opacities: one per lung when there are two; a lung with several gets them stacked vertically."""
    if n == 0:
        return []
    if n == 1:
        sides = [0 if rng.random() < 0.55 else 1]  # right-sided (image left) pneumonia is a little more common
    else:
        first = int(rng.integers(0, 2))
        sides = [(first + k) % 2 for k in range(n)]
    per_side = {0: sides.count(0), 1: sides.count(1)}
    seen = {0: 0, 1: 0}
    alphas = []
    for side in sides:
        lung = lung_r if side == 0 else lung_l
        k, total = seen[side], per_side[side]
        seen[side] += 1
        w, h = _sample_box_size(rng)
        if total == 1:
            band = (0.3, 0.85)  # lower and middle zones are the usual places
        else:
            lo = 0.1 + 0.85 * k / total
            band = (lo, lo + 0.85 / total)
            h = min(h, 0.85 / total * frame.a.thorax_h)
        center = _lung_points(rng, frame, lung, 1, band)[0]
        alphas.append(_opacity_alpha(rng, frame, lung, center, w, h, texture))
    return alphas


def _effusion(rng: np.random.Generator, frame: _Frame, a: _Anatomy, lung: np.ndarray, side: float) -> np.ndarray:
    """Pleural fluid at one base: a meniscus rising laterally that blunts the costophrenic angle."""
    X, Y = frame.X, frame.Y
    dome = a.dome_right if side < 0 else a.dome_left
    level = dome - rng.uniform(0.02, 0.2)
    lateral = np.clip((side * X - 0.2) / (a.lung_cx + a.lung_rx - 0.2), 0, 1)
    surface = level - 0.2 * lateral**2
    return _step(Y - surface, 3.0, frame.px_per_y) * np.clip(lung * 1.3, 0, 1)


def _nodule(rng: np.random.Generator, frame: _Frame, lung: np.ndarray) -> np.ndarray:
    """A small, dense, well-defined round nodule (about 1-2 cm)."""
    cx, cy = _lung_points(rng, frame, lung, 1, (0.15, 0.8))[0]
    r = rng.uniform(0.022, 0.04)  # thorax Y units
    rx = r * frame.a.thorax_h / frame.a.thorax_w
    return _inside_ellipse(frame, cx, cy, rx, r, soft_px=0.8)


def _devices(rng: np.random.Generator, frame: _Frame) -> np.ndarray:
    """Support devices (0..1 map): an endotracheal tube, a central venous line, ECG electrodes with leads."""
    canvas = np.zeros((frame.h, frame.w), np.uint8)
    kinds = [str(k) for k in rng.permutation(["ett", "line", "ecg"])[: int(rng.integers(1, 4))]]
    if "ett" in kinds:
        tip = rng.uniform(0.05, 0.2)
        _draw_polylines(canvas, frame, [np.array([[0.0, -0.8], [0.005, -0.3], [0.0, tip]])], 0.014, 255)
    if "line" in kinds:
        side = -1.0 if rng.random() < 0.5 else 1.0
        pts = np.array(
            [
                [side * 0.95, -0.28],
                [side * 0.55, -0.1],
                [side * 0.2, 0.02],
                [-0.06, 0.18],
                [-0.08, rng.uniform(0.3, 0.45)],
            ]
        )
        _draw_polylines(canvas, frame, [pts], 0.01, 230)
    if "ecg" in kinds:
        for _ in range(int(rng.integers(2, 5))):
            ex, ey = rng.uniform(-1.1, 1.1), rng.uniform(-0.2, 1.1)
            c = frame.to_px(np.array([ex]), np.array([ey]))[0]
            rad = max(1, int(round(0.03 * frame.px_per_y)))
            cv2.circle(
                canvas, (int(round(c[0])), int(round(c[1]))), rad, 255, thickness=max(1, rad // 2), lineType=cv2.LINE_AA
            )
            wire = np.array(
                [
                    [ex, ey],
                    [ex + rng.uniform(-0.4, 0.4), ey - 0.3],
                    [math.copysign(1.6, ex), ey - rng.uniform(0.4, 1.0)],
                ]
            )
            _draw_polylines(canvas, frame, [wire], 0.008, 200)
    return _blur(canvas.astype(np.float32) / 255.0, 0.5)


def _consolidation(
    rng: np.random.Generator, frame: _Frame, lung: np.ndarray, side: float, texture: np.ndarray, subtlety: float = 0.0
) -> np.ndarray:
    """Lobar consolidation (bacterial pneumonia): a lobe-sized density bounded by a fissure, with air bronchograms.

    `subtlety` (0..1) shrinks it from the whole lobe towards a segmental patch covering part of
    it (its spread drawn per film), as early or partly treated pneumonia looks.
    """
    X, Y = frame.X, frame.Y
    if rng.random() < 0.6:  # lower lobe, below an oblique fissure
        fissure = rng.uniform(0.35, 0.55) + 0.25 * (side * X - 0.5)
        region = _step(Y - fissure, 3.0, frame.px_per_y)
    else:  # upper lobe, above a roughly horizontal fissure
        fissure = rng.uniform(0.4, 0.55) + rng.normal(0, 0.05) * X
        region = _step(fissure - Y, 3.0, frame.px_per_y)
    cx, cy = _lung_points(rng, frame, lung * region, 1, (0.1, 0.95))[0]
    rx, ry = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.35)
    lobar = 0.35
    if subtlety > 0:  # extra draws only here: subtlety 0 renders the former films byte for byte
        extent = rng.uniform(1.0 - 0.65 * subtlety, 1.0)
        rx, ry, lobar = rx * extent, ry * extent, lobar * (1.0 - subtlety)
    blob = np.exp(-0.5 * (((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2))
    alpha = np.clip(region * (lobar + (1 - lobar) * blob), 0, 1) * (0.6 + 0.4 * texture) * np.clip(lung * 1.1, 0, 1)
    canvas = np.zeros((frame.h, frame.w), np.uint8)
    levels = _branching_tree(rng, (side * 0.25, cy - 0.05), side, n_main=3, length=0.16, depth=3, spread_deg=90)
    for lvl, segs in enumerate(levels):
        _draw_polylines(canvas, frame, segs, 0.016 * 0.75**lvl, 255)
    bronchi = _blur(canvas.astype(np.float32) / 255.0, 0.5)
    return (alpha * (1 - 0.55 * bronchi)).astype(np.float32)


def _interstitial(rng: np.random.Generator, frame: _Frame, lungs: np.ndarray, subtlety: float = 0.0) -> np.ndarray:
    """Viral pneumonia: bilateral perihilar streaky interstitial markings with peribronchial cuffing.

    `subtlety` (0..1) thins the streaks out (down to a third of them) and makes the pattern
    patchy, so that a subtle case is a faint diffuse texture over parts of the lungs.
    """
    X, Y = frame.X, frame.Y
    canvas = np.zeros((frame.h, frame.w), np.uint8)
    keep = 1.0 - rng.uniform(0.0, 0.67 * subtlety) if subtlety > 0 else 1.0
    for side, hy in ((-1.0, 0.5), (1.0, 0.45)):
        streaks = []
        for _ in range(max(4, int(keep * int(rng.integers(40, 70))))):
            ang = rng.uniform(-1.4, 1.4)
            r0 = rng.uniform(0.02, 0.3)
            ln = rng.uniform(0.06, 0.22)
            x0, y0 = side * (0.2 + r0 * math.cos(ang)), hy + 0.8 * r0 * math.sin(ang)
            a1 = ang + rng.normal(0, 0.25)
            streaks.append(np.array([[x0, y0], [x0 + side * ln * math.cos(a1), y0 + 0.8 * ln * math.sin(a1)]]))
        _draw_polylines(canvas, frame, streaks, 0.013, 255)
    streak = _blur(canvas.astype(np.float32) / 255.0, 0.7)
    reticular = np.clip(_smooth_noise(rng, frame.h, frame.w, 2.5), 0, None) * 0.4
    perihilar = np.exp(-0.5 * (((np.abs(X) - 0.3) / 0.35) ** 2 + ((Y - 0.5) / 0.35) ** 2))
    if subtlety > 0:  # patchy: a smooth random envelope leaves parts of the lungs clear
        patches = np.clip(0.5 + 0.6 * _smooth_noise(rng, frame.h, frame.w, frame.px_per_y * 0.3), 0, 1)
        perihilar = perihilar * (1.0 - subtlety + subtlety * patches)
    return (np.clip(streak + reticular, 0, 1.5) * (0.35 + 0.65 * perihilar) * np.clip(lungs * 1.1, 0, 1)).astype(
        np.float32
    )


def _label_free_densities(rng: np.random.Generator, frame: _Frame, nuisance: float) -> np.ndarray:
    """Densities that are not pneumonia, on any film: support devices and overlapping soft tissue.

    Overlap (a thymus, an arm or a skin fold over the lung) is a broad faint density of about
    a subtle consolidation's strength: a model must tell the two apart by shape, not presence.
    """
    out = np.zeros((frame.h, frame.w), np.float32)
    if rng.random() < _DEVICE_PROB * nuisance:
        out += rng.uniform(0.3, 0.45) * _devices(rng, frame)
    if rng.random() < _OVERLAP_PROB * nuisance:
        cx, cy = rng.uniform(-0.9, 0.9), rng.uniform(0.1, 0.9)
        rx, ry = rng.uniform(0.15, 0.45), rng.uniform(0.12, 0.35)
        blob = np.exp(-0.5 * (((frame.X - cx) / rx) ** 2 + ((frame.Y - cy) / ry) ** 2))
        out += rng.uniform(0.03, 0.1) * blob.astype(np.float32)
    return out


def _collimate(rng: np.random.Generator, img: np.ndarray, nuisance: float) -> np.ndarray:
    """Collimator shutters on some films: bright unexposed bands along one to four edges."""
    if rng.random() >= _SHUTTER_PROB * nuisance:
        return img
    h, w = img.shape
    inside = np.ones((h, w), np.float32)
    for edge in range(4):
        if rng.random() < 0.5:
            continue
        depth = int(rng.uniform(0.02, 0.09) * (h if edge < 2 else w))
        if edge == 0:
            inside[:depth] = 0
        elif edge == 1:
            inside[h - depth :] = 0
        elif edge == 2:
            inside[:, :depth] = 0
        else:
            inside[:, w - depth :] = 0
    inside = _blur(inside, 0.8)
    level = np.float32(rng.uniform(0.75, 0.95))
    return (img * inside + level * (1 - inside)).astype(np.float32)


# what the burned-in text says: side markers, projections, technologists' notes
_MARKER_TEXTS: tuple[str, ...] = ("L", "R")
_LABEL_TEXTS: tuple[str, ...] = ("AP", "PA", "PORTABLE", "SUPINE", "ERECT", "AP SITTING", "L SIDE", "PED")


def _burn_in_annotations(rng: np.random.Generator, pixels: np.ndarray, nuisance: float) -> None:
    """Burned-in side markers and text, in place (after the noise: they are drawn on the film, crisp)."""
    h, w = pixels.shape
    scale = max(h, w) / 600.0
    if rng.random() < _MARKER_PROB * nuisance:
        text = str(rng.choice(_MARKER_TEXTS))
        x = int(rng.uniform(0.03, 0.2) * w) if rng.random() < 0.5 else int(rng.uniform(0.75, 0.9) * w)
        y = int(rng.uniform(0.08, 0.25) * h)
        size = scale * rng.uniform(1.0, 2.0)
        cv2.putText(
            pixels,
            text,
            (x, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            size,
            int(rng.integers(190, 256)),
            max(1, int(round(2.5 * size))),
            cv2.LINE_AA,
        )
    if rng.random() < _TEXT_PROB * nuisance:
        text = str(rng.choice(_LABEL_TEXTS))
        if rng.random() < 0.5:
            text += f" {int(rng.integers(1, 13)):02d}/{int(rng.integers(1, 29)):02d}"
        x = int(rng.uniform(0.02, 0.5) * w)
        y = int(rng.uniform(0.05, 0.97) * h)
        size = scale * rng.uniform(0.5, 1.0)
        cv2.putText(
            pixels,
            text,
            (x, y),
            cv2.FONT_HERSHEY_SIMPLEX,
            size,
            int(rng.integers(170, 256)),
            max(1, int(round(2 * size))),
            cv2.LINE_AA,
        )


# ----------------------------------------------------------------------------- exposure and noise


def _expose(att: np.ndarray, a: _Anatomy, frame: _Frame, rng: np.random.Generator) -> np.ndarray:
    """Attenuation -> display intensity 0..1: per-image exposure, gradient, low-frequency variation, gamma."""
    x = np.linspace(-0.5, 0.5, frame.w, dtype=np.float32)[None, :]
    y = np.linspace(-0.5, 0.5, frame.h, dtype=np.float32)[:, None]
    gain = 1.0 + a.gradient_x * x + a.gradient_y * y + a.lowfreq_amp * _smooth_noise(rng, frame.h, frame.w, frame.h / 4)
    v = np.clip(att * gain, 0, 1.15) ** np.float32(a.gamma)
    return (a.background + (a.white - a.background) * v).astype(np.float32)


def render_chest_radiograph(
    rng: np.random.Generator,
    height_px: int,
    width_px: int,
    *,
    opacities: int = 0,
    abnormal_not_opacity: bool = False,
    pattern: str = "none",
    child: bool = False,
    subtlety: float = 0.0,
    nuisance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic frontal chest radiograph.

    - `opacities`: number of airspace opacities (RSNA 'Lung Opacity' boxes) to draw, 0..8; each
      lies inside a lung field, one per lung when there are two.
    - `abnormal_not_opacity`: add 1-2 abnormalities that are NOT lung opacities (pleural
      effusion, cardiomegaly, a small dense nodule, support devices, hyperinflation), as on
      RSNA's 'No Lung Opacity / Not Normal' images. They produce no boxes.
    - `pattern`: Kermany pneumonia pattern: 'none', 'bacterial' (lobar consolidation with air
      bronchograms, one lung) or 'viral' (bilateral perihilar interstitial streaks). Patterns
      produce no boxes (Kermany has none).
    - `child`: paediatric proportions (a smaller thorax in the frame, arms and abdomen in view).
    - `subtlety` (0..1): how faint and partial the `pattern` is. 0: the textbook picture (a
      whole dense lobe, dense bilateral streaks); 1: consolidation density near the anatomical
      clutter (ribs, vessels) and covering part of a lobe, viral markings a faint patchy texture.
      Each film draws its own strength, so a set mixes obvious and borderline cases.
    - `nuisance` (0..1): label-free variation, 0 = none beyond the anatomy's own, 1 = about a
      real set's spread: body size, positioning and rotation, inspiration, exposure and
      processing, the density of normal lung markings, soft-tissue overlap, support devices,
      collimator shutters, burned-in side markers and text. It is drawn from its own stream,
      identically for every `pattern`, so none of it carries the label.
    Both 0 (the defaults) render exactly the films of before (RSNA's).

    Returns (pixels, boxes_xyxy): pixels uint8 [height_px, width_px], MONOCHROME2 (0 = air);
    boxes_xyxy float32 [opacities, 4], integer-valued xyxy pixel bounds (x_max, y_max exclusive,
    so width = x_max - x_min) of the region where each opacity's alpha exceeds
    BOX_ALPHA_FRACTION of its peak, inside the image; (0, 4) when opacities == 0.
    Consumes exactly one draw from `rng` (see the module docstring).
    """
    if height_px < 16 or width_px < 16:
        raise ValueError(f"height_px and width_px must be >= 16, got {height_px}x{width_px}")
    if not 0 <= opacities <= MAX_OPACITIES:
        raise ValueError(f"opacities must be in 0..{MAX_OPACITIES}, got {opacities}")
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if not (0.0 <= subtlety <= 1.0 and 0.0 <= nuisance <= 1.0):
        raise ValueError(f"subtlety and nuisance must be in 0..1, got {subtlety} and {nuisance}")
    seeds = rng.integers(0, 2**63 - 1, size=5, dtype=np.int64)
    anat_rng, opac_rng, find_rng, noise_rng, tex_rng = (np.random.default_rng(int(s)) for s in seeds)
    # the nuisance stream hangs off the anatomy seed: no extra draw from `rng`, none from the others
    nuis_rng = np.random.default_rng([int(seeds[0]), 1])

    a = _sample_anatomy(anat_rng, width_px / height_px, child)
    if nuisance > 0:
        a = _vary_anatomy(nuis_rng, a, width_px / height_px, nuisance)
    findings: list[str] = []
    if abnormal_not_opacity:
        n_find = 1 if find_rng.random() < 0.7 else 2
        findings = [str(f) for f in find_rng.choice(NOT_OPACITY_FINDINGS, size=n_find, replace=False)]
        if "cardiomegaly" in findings:
            s = find_rng.uniform(1.25, 1.45)
            a = replace(a, heart_rx=a.heart_rx * s, heart_ry=a.heart_ry * s, heart_cx=a.heart_cx + 0.06)
        if "hyperinflation" in findings:
            a = replace(
                a,
                dome_right=a.dome_right + 0.1,
                dome_left=a.dome_left + 0.08,
                dome_depth=a.dome_depth * 0.5,
                lung_ry=a.lung_ry * 1.08,
                lung_air=a.lung_air * 1.1,
                heart_rx=a.heart_rx * 0.85,
            )

    frame = _Frame(a, height_px, width_px)
    att, lung_r, lung_l, hidden = _anatomy_attenuation(frame, a, anat_rng)
    # the opacities' texture: fine and coarse mottling, 0..1
    texture = np.clip(
        0.5
        + 0.13 * _smooth_noise(tex_rng, frame.h, frame.w, 2.5)
        + 0.22 * _smooth_noise(tex_rng, frame.h, frame.w, 7.0),
        0,
        1,
    )

    for f in findings:
        if f == "effusion":
            side = -1.0 if find_rng.random() < 0.5 else 1.0
            att += find_rng.uniform(0.3, 0.4) * _effusion(find_rng, frame, a, lung_r if side < 0 else lung_l, side)
        elif f == "nodule":
            att += find_rng.uniform(0.2, 0.3) * _nodule(find_rng, frame, lung_r if find_rng.random() < 0.5 else lung_l)
        elif f == "device":
            att += find_rng.uniform(0.3, 0.45) * _devices(find_rng, frame)
    if nuisance > 0:
        att += _label_free_densities(nuis_rng, frame, nuisance)
    # pneumonia sits in the lung that is not hidden behind the heart (it fades out behind it)
    not_hidden = 1.0 - 0.85 * hidden
    if pattern == "bacterial":
        side = -1.0 if find_rng.random() < 0.5 else 1.0
        lung = (lung_r if side < 0 else lung_l) * not_hidden
        density = find_rng.uniform(0.3, 0.42)
        shape = _consolidation(find_rng, frame, lung, side, texture, subtlety)
        if subtlety > 0:
            density *= 1.0 - subtlety * find_rng.uniform(*_SUBTLE_CONSOLIDATION_CUT)
        att += density * shape
    elif pattern == "viral":
        density = find_rng.uniform(0.1, 0.15)
        shape = _interstitial(find_rng, frame, (lung_r + lung_l) * not_hidden, subtlety)
        if subtlety > 0:
            density *= 1.0 - subtlety * find_rng.uniform(*_SUBTLE_INTERSTITIAL_CUT)
        att += density * shape

    alphas = _opacity_alphas(opac_rng, frame, lung_r * not_hidden, lung_l * not_hidden, opacities, texture)
    for alpha in alphas:
        att += opac_rng.uniform(0.2, 0.34) * alpha

    img_lo = _expose(att, a, frame, noise_rng)
    if nuisance > 0:
        img_lo = _collimate(nuis_rng, img_lo, nuisance)
    pixels = _to_full_resolution(img_lo, a.noise_sigma, height_px, width_px, noise_rng)
    if nuisance > 0:
        _burn_in_annotations(nuis_rng, pixels, nuisance)
    return pixels, _boxes_from_alphas(alphas, height_px, width_px)


def _gaussian_lut(sigma_levels: float) -> np.ndarray:
    """A uint8 lookup table that turns uniform random bytes into N(0, sigma) grey-level offsets, stored +128."""
    # normal quantiles at the 256 bytes' mid-probabilities: Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4)
    p = (np.arange(256) + 0.5) / 256.0
    q = np.sqrt(-2.0 * np.log(np.minimum(p, 1 - p)))
    z = q - (2.515517 + 0.802853 * q + 0.010328 * q * q) / (1 + 1.432788 * q + 0.189269 * q * q + 0.001308 * q**3)
    z = np.where(p < 0.5, -z, z)
    return np.clip(np.round(128.0 + sigma_levels * z), 0, 255).astype(np.uint8)


def _to_full_resolution(
    img_lo: np.ndarray, noise_sigma: float, height_px: int, width_px: int, rng: np.random.Generator
) -> np.ndarray:
    """Upscale the low-res intensity (0..1) and add quantum noise (std noise_sigma) at full resolution -> uint8.

    All full-resolution work is in uint8 (cv2's fixed-point paths): raw generator bytes mapped
    through a gaussian lookup table are ~30x cheaper than drawing normals.
    """
    lo_u8 = cv2.convertScaleAbs(img_lo, alpha=255.0)
    img = cv2.resize(lo_u8, (width_px, height_px), interpolation=cv2.INTER_LINEAR)
    n_words = (height_px * width_px + 7) // 8
    raw = rng.bit_generator.random_raw(n_words).view(np.uint8)[: height_px * width_px].reshape(height_px, width_px)
    noise = cv2.LUT(raw, _gaussian_lut(noise_sigma * 255.0))
    # img + (noise - 128), computed before saturating to 0..255
    return cv2.addWeighted(img, 1.0, noise, 1.0, -128.0)


def _boxes_from_alphas(alphas: list[np.ndarray], height_px: int, width_px: int) -> np.ndarray:
    """Bounding boxes (xyxy, max exclusive) of alpha > BOX_ALPHA_FRACTION * peak after upscaling to full resolution.

    Only the alpha's support is upscaled (same scale factors as the image), so the box is
    exact to about one full-resolution pixel at a fraction of a full-image resize.
    """
    if not alphas:
        return np.zeros((0, 4), dtype=np.float32)
    boxes = np.zeros((len(alphas), 4), dtype=np.float32)
    for k, alpha in enumerate(alphas):
        h_lo, w_lo = alpha.shape
        fy, fx = height_px / h_lo, width_px / w_lo
        rows = np.flatnonzero(alpha.max(axis=1) > 0.5 * BOX_ALPHA_FRACTION)
        cols = np.flatnonzero(alpha.max(axis=0) > 0.5 * BOX_ALPHA_FRACTION)
        r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, h_lo)
        c0, c1 = max(cols[0] - 2, 0), min(cols[-1] + 3, w_lo)
        x_off, y_off = int(round(c0 * fx)), int(round(r0 * fy))
        out_w = min(int(round(c1 * fx)), width_px) - x_off
        out_h = min(int(round(r1 * fy)), height_px) - y_off
        up = cv2.resize(np.ascontiguousarray(alpha[r0:r1, c0:c1]), (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        m = up > BOX_ALPHA_FRACTION  # alphas are normalised to a peak of 1
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        boxes[k] = (x_off + xs[0], y_off + ys[0], x_off + xs[-1] + 1, y_off + ys[-1] + 1)
    return boxes
