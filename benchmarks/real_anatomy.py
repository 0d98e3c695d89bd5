"""Datasets with real chest anatomy: real radiographs as backgrounds, synthetic findings on them,
written in the RSNA and Kermany layouts (the readers, `detect prepare` and every command take
them as they take the Kaggle sets).

    python benchmarks/real_anatomy.py FILMS_DIR OUT_DIR [--rsna-images 300] [--kermany-images 600]

FILMS_DIR holds a few real frontal chest radiographs (PNG, JPEG or DICOM), for example the
films in the `tests/` folder of torchxrayvision's public repository (NIH, PadChest, RSNA,
TBX11K, a COVID-19 case). They are not part of this project and are never committed: a
benchmark reads them from where the user keeps them.

Why: the project's synthetic films (`detect synth`) are drawn from a phantom, and on them a
ResNet trained from scratch reaches near-perfect scores that real radiographs never give. Real
backgrounds carry what a phantom lacks (real ribs, vessels, devices, exposure, positioning), so
the question "is there an opacity here?" must be answered against real anatomy.

What is drawn on each film (a fresh random view of one background: crop 70-100 % of the area,
rotation within 8 degrees, gamma, contrast, blur and noise):
- RSNA layout: 'Lung Opacity' images get 1-2 airspace opacities (a textured union of soft
  blobs, clipped to the lung, each of its own density), boxed where the opacity exceeds 30 % of
  its peak, as RSNA's readers boxed; 'No Lung Opacity / Not Normal' images get a finding that
  is not an opacity (a small dense nodule or a basal effusion band); 'Normal' images nothing.
- Kermany layout: PNEUMONIA films get a large, faint consolidation (bacteria) or bilateral
  patchy shadowing (virus); NORMAL films nothing. Kermany has no boxes.
The lungs of a background are found as the dark regions inside the thorax (Otsu on the
smoothed film, within the central band), so findings sit in a lung as real ones do.

Held-out anatomy: the Kermany layout's test/ folder (the split every Kermany report scores)
uses backgrounds that train/ and val/ never see (every fourth film); in the RSNA layout the
split is the project's patient-level one, so all backgrounds appear in every split under
different views, as the same scanner and population do in a hospital's data.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from data_prep.images import read_any_image  # noqa: E402
from data_prep.synth.rsna import CLASS_INFO_CSV, LABELS_CSV, TRAIN_IMAGES_DIR, write_jpeg_baseline_dicom  # noqa: E402

FILM_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
BOX_ALPHA_FRACTION = 0.3
HELD_OUT_EVERY = 4  # every fourth background is Kermany-test-only


@dataclass(frozen=True)
class Background:
    name: str
    pixels: np.ndarray  # uint8 [H, W], MONOCHROME2 (air dark)


def load_backgrounds(films_dir: str | Path, size_px: int = 768) -> list[Background]:
    """Every readable film under `films_dir`, grey, resized so its short side is `size_px`."""
    paths = sorted(p for p in Path(films_dir).rglob("*") if p.suffix.lower() in FILM_SUFFIXES)
    backgrounds = []
    for path in paths:
        pixels, _ = read_any_image(path)
        scale = size_px / min(pixels.shape)
        pixels = cv2.resize(
            pixels, (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
        backgrounds.append(Background(path.stem, pixels))
    if len(backgrounds) < 2:
        raise SystemExit(f"{films_dir}: found {len(backgrounds)} films; at least 2 are needed")
    return backgrounds


def random_view(rng: np.random.Generator, film: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """A fresh view of one film: crop, rotation, gamma, contrast, blur, noise; uint8 [out_hw]."""
    h, w = film.shape
    area = rng.uniform(0.7, 1.0)
    aspect = rng.uniform(0.9, 1.1)
    ch = min(h, int(round(h * np.sqrt(area / aspect))))
    cw = min(w, int(round(w * np.sqrt(area * aspect))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = film[y0 : y0 + ch, x0 : x0 + cw]
    angle = rng.uniform(-8, 8)
    matrix = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    crop = cv2.warpAffine(crop, matrix, (cw, ch), borderMode=cv2.BORDER_REFLECT)
    view = cv2.resize(crop, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    view = np.clip(view, 0, 1) ** rng.uniform(0.75, 1.35)
    view = (view - 0.5) * rng.uniform(0.85, 1.15) + 0.5 + rng.uniform(-0.06, 0.06)
    if rng.random() < 0.5:
        view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.5, 1.5))
    view = view + rng.normal(0, rng.uniform(0.005, 0.02), view.shape).astype(np.float32)
    return np.clip(view, 0, 1)


def lung_mask(view: np.ndarray) -> np.ndarray:
    """float32 [H, W] in 0..1: the dark regions inside the thorax's central band (the lungs)."""
    h, w = view.shape
    smooth = cv2.GaussianBlur((view * 255).astype(np.uint8), (0, 0), max(h, w) / 60)
    band = np.zeros_like(smooth, dtype=bool)
    band[int(0.12 * h) : int(0.78 * h), int(0.1 * w) : int(0.9 * w)] = True
    threshold, _ = cv2.threshold(smooth[band], 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((smooth < threshold) & band).astype(np.float32)
    mask = cv2.erode(mask, np.ones((max(3, h // 40),) * 2, np.uint8))
    return cv2.GaussianBlur(mask, (0, 0), max(h, w) / 80)


def _smooth_noise(rng: np.random.Generator, hw: tuple[int, int], cell_px: float) -> np.ndarray:
    small = rng.normal(0, 1, (max(2, int(hw[0] / cell_px)), max(2, int(hw[1] / cell_px)))).astype(np.float32)
    big = cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    return big / (big.std() + 1e-6)


def _lung_point(rng: np.random.Generator, mask: np.ndarray, side: int) -> tuple[float, float] | None:
    """A point well inside the lung on one side (0: image left, 1: image right), or None."""
    h, w = mask.shape
    half = mask[:, : w // 2] if side == 0 else mask[:, w // 2 :]
    ys, xs = np.nonzero(half > 0.7)
    if ys.size == 0:
        return None
    k = int(rng.integers(0, ys.size))
    return float(xs[k] + (0 if side == 0 else w // 2)), float(ys[k])


def opacity_alpha(
    rng: np.random.Generator, mask: np.ndarray, center: tuple[float, float], size_wh_px: tuple[float, float]
) -> np.ndarray:
    """Alpha (0..1, peak 1) of one airspace opacity: soft blobs, textured, clipped to the lung."""
    h, w = mask.shape
    Y, X = np.mgrid[0:h, 0:w].astype(np.float32)
    acc = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        bx = center[0] + rng.uniform(-0.3, 0.3) * size_wh_px[0]
        by = center[1] + rng.uniform(-0.3, 0.3) * size_wh_px[1]
        sx = size_wh_px[0] * rng.uniform(0.18, 0.3)
        sy = size_wh_px[1] * rng.uniform(0.18, 0.3)
        acc = np.maximum(acc, rng.uniform(0.75, 1.0) * np.exp(-0.5 * (((X - bx) / sx) ** 2 + ((Y - by) / sy) ** 2)))
    texture = np.clip(0.55 + 0.25 * _smooth_noise(rng, (h, w), max(h, w) / 40), 0, 1)
    acc = acc * texture * np.clip(mask * 1.2, 0, 1)
    peak = float(acc.max())
    return acc / peak if peak > 0 else acc


def add_density(view: np.ndarray, alpha: np.ndarray, density: float) -> np.ndarray:
    """Brighten towards white where `alpha` is: fluid-filled air spaces attenuate more."""
    return view + density * alpha * (1.0 - view)


def box_of(alpha: np.ndarray) -> tuple[float, float, float, float] | None:
    ys, xs = np.nonzero(alpha > BOX_ALPHA_FRACTION)
    if ys.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def rsna_film(
    rng: np.random.Generator, film: np.ndarray, size_px: int, rsna_class: str
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """One RSNA-layout film of `rsna_class` on a view of `film`: uint8 [size_px, size_px], boxes xyxy."""
    view = random_view(rng, film, (size_px, size_px))
    mask = lung_mask(view)
    boxes = []
    if rsna_class == "Lung Opacity":
        sides = [int(rng.integers(0, 2))] if rng.random() < 0.55 else [0, 1]
        for side in sides:
            center = _lung_point(rng, mask, side)
            if center is None:
                continue
            size = (size_px * rng.uniform(0.14, 0.28), size_px * rng.uniform(0.18, 0.36))
            alpha = opacity_alpha(rng, mask, center, size)
            box = box_of(alpha)
            if box is None:
                continue
            view = add_density(view, alpha, rng.uniform(0.18, 0.4))
            boxes.append(box)
    elif rsna_class == "No Lung Opacity / Not Normal":
        view = _not_opacity_finding(rng, view, mask)
    return (np.clip(view, 0, 1) * 255).astype(np.uint8), boxes


def _not_opacity_finding(rng: np.random.Generator, view: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A small dense nodule, or a basal effusion band: abnormal, but not an airspace opacity."""
    h, w = view.shape
    center = _lung_point(rng, mask, int(rng.integers(0, 2)))
    if center is None:
        return view
    Y, X = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        r = h * rng.uniform(0.012, 0.025)
        alpha = np.exp(-0.5 * (((X - center[0]) ** 2 + (Y - center[1]) ** 2) / r**2))
        return add_density(view, alpha, rng.uniform(0.35, 0.55))
    rows = np.nonzero(mask.max(axis=1) > 0.5)[0]
    base = float(rows.max()) if rows.size else 0.7 * h
    side = X < w / 2 if center[0] < w / 2 else X >= w / 2
    alpha = np.clip((Y - (base - h * rng.uniform(0.05, 0.12))) / (h * 0.04), 0, 1) * side * np.clip(mask * 3, 0, 1)
    return add_density(view, cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), h / 100), rng.uniform(0.3, 0.5))


def kermany_film(rng: np.random.Generator, film: np.ndarray, hw: tuple[int, int], kind: str | None) -> np.ndarray:
    """One Kermany-layout film: NORMAL (kind None), bacteria (a large faint consolidation) or virus
    (bilateral patchy shadowing); uint8 [hw]."""
    view = random_view(rng, film, hw)
    if kind is None:
        return (np.clip(view, 0, 1) * 255).astype(np.uint8)
    mask = lung_mask(view)
    h, w = hw
    if kind == "bacteria":
        center = _lung_point(rng, mask, int(rng.integers(0, 2)))
        if center is not None:
            alpha = opacity_alpha(rng, mask, center, (w * rng.uniform(0.18, 0.3), h * rng.uniform(0.22, 0.4)))
            view = add_density(view, alpha, rng.uniform(0.15, 0.35))
    else:
        patches = np.clip(_smooth_noise(rng, hw, max(hw) / 25) - 0.4, 0, None)
        alpha = patches * mask
        peak = float(alpha.max())
        if peak > 0:
            view = add_density(view, alpha / peak, rng.uniform(0.12, 0.25))
    return (np.clip(view, 0, 1) * 255).astype(np.uint8)


def write_rsna(out: Path, backgrounds: list[Background], n_images: int, seed: int, size_px: int = 512) -> dict:
    """The RSNA layout (stage_2_train_images/*.dcm + the two label CSVs), classes in RSNA's
    proportions (Normal 31 %, No Lung Opacity / Not Normal 40 %, Lung Opacity 29 % of images)."""
    rng = np.random.default_rng(seed)
    images = out / TRAIN_IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    classes = rng.choice(
        ["Normal", "No Lung Opacity / Not Normal", "Lung Opacity"], size=n_images, p=[0.31, 0.40, 0.29]
    )
    label_lines, class_lines = ["patientId,x,y,width,height,Target"], ["patientId,class"]
    counts = {"images": 0, "boxes": 0, "Lung Opacity": 0}
    for i, rsna_class in enumerate(classes):
        film = backgrounds[int(rng.integers(0, len(backgrounds)))].pixels
        pixels, boxes = rsna_film(rng, film, size_px, str(rsna_class))
        if rsna_class == "Lung Opacity" and not boxes:
            rsna_class = "Normal"
        patient_id = f"{seed:08x}-{i % 65536:04x}-4000-8000-{i:012x}"  # RSNA's ids are UUIDs
        write_jpeg_baseline_dicom(
            images / f"{patient_id}.dcm",
            pixels,
            patient_id=patient_id,
            sex="F",
            age="50",
            view_position="PA",
            pixel_spacing_mm=0.143 * 1024 / size_px,
            sop_instance_uid=f"1.2.276.0.7230010.3.1.4.8323329.{i + 1}.1517875{seed % 1000:03d}.{i + 1}",
        )
        if boxes:
            for x0, y0, x1, y1 in boxes:
                label_lines.append(f"{patient_id},{x0},{y0},{x1 - x0},{y1 - y0},1")
                class_lines.append(f"{patient_id},{rsna_class}")
        else:
            label_lines.append(f"{patient_id},,,,,0")
            class_lines.append(f"{patient_id},{rsna_class}")
        counts["images"] += 1
        counts["boxes"] += len(boxes)
        counts["Lung Opacity"] += bool(boxes)
    (out / LABELS_CSV).write_text("\n".join(label_lines) + "\n")
    (out / CLASS_INFO_CSV).write_text("\n".join(class_lines) + "\n")
    return counts


def write_kermany(out: Path, backgrounds: list[Background], n_images: int, seed: int) -> dict:
    """The Kermany layout (chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg); test/ from the
    held-out backgrounds only, 624/5856 of the images as in the real set; NORMAL 26 % of train,
    37.5 % of test (the real set's shift); children with several films each."""
    rng = np.random.default_rng(seed)
    held = [b for i, b in enumerate(backgrounds) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    seen = [b for b in backgrounds if b not in held]
    n_test = max(8, round(n_images * 624 / 5856))
    plan = [("test", n_test, 0.375, held), ("train", n_images - n_test - 16, 0.26, seen), ("val", 16, 0.5, seen)]
    counts: dict[str, int] = {}
    person = 0
    for split, n, normal_share, pool in plan:
        for label in ("NORMAL", "PNEUMONIA"):
            (out / "chest_xray" / split / label).mkdir(parents=True, exist_ok=True)
        n_normal = round(n * normal_share)
        for i in range(n):
            person += 1
            kind = None if i < n_normal else ("bacteria" if rng.random() < 0.65 else "virus")
            h, w = int(rng.integers(480, 640)), int(rng.integers(560, 760))
            film = pool[int(rng.integers(0, len(pool)))].pixels
            pixels = kermany_film(rng, film, (h, w), kind)
            if kind is None:
                path = out / "chest_xray" / split / "NORMAL" / f"IM-{person:04d}-0001.jpeg"
            else:
                path = out / "chest_xray" / split / "PNEUMONIA" / f"person{person}_{kind}_{i}.jpeg"
            cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 92])
            key = f"{split}_{'NORMAL' if kind is None else 'PNEUMONIA'}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("films", help="folder of real frontal chest radiographs (PNG, JPEG, DICOM)")
    parser.add_argument("out", help="output folder: OUT/rsna and OUT/kermany")
    parser.add_argument("--rsna-images", type=int, default=300)
    parser.add_argument("--kermany-images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backgrounds = load_backgrounds(args.films)
    out = Path(args.out)
    print(f"{len(backgrounds)} backgrounds: {', '.join(b.name for b in backgrounds)}")
    if args.rsna_images:
        print("rsna:", write_rsna(out / "rsna", backgrounds, args.rsna_images, args.seed))
    if args.kermany_images:
        print("kermany:", write_kermany(out / "kermany", backgrounds, args.kermany_images, args.seed))


if __name__ == "__main__":
    main()
