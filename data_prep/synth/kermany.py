"""Synthetic Kermany "Chest X-Ray Images (Pneumonia)", written exactly in the Kaggle layout.

    OUT/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg
    OUT/SYNTHETIC_DATASET.json            (ours: provenance and exact counts)

File names as in the real set (see docs/data-formats.md):

    PNEUMONIA/person{N}_bacteria_{K}.jpeg   child N, bacterial; K counts that subtype's images
    PNEUMONIA/person{N}_virus_{K}.jpeg      child N, viral
    NORMAL/IM-{PPPP}-{IIII}.jpeg            patient PPPP, image IIII of that patient
    NORMAL/NORMAL2-IM-{PPPP}-{IIII}.jpeg    patient 'NORMAL2-PPPP' (a second numbering)

Several images per child. train/ and val/ share one numbering (val's children come after
train's); numbers restart in test/ (person1 in test is not person1 in train). Split sizes and
class ratios follow the real set: train 5,216 (NORMAL 26%), val 16 (8 + 8), test 624 (NORMAL
37.5%); about 65% of the pneumonia images are bacterial. Sizes are non-square; most JPEGs are
single-channel, about 5% are 3-channel; `.DS_Store` junk lies in some folders.

Images are rendered as children's films (`child=True`): NORMAL without findings, bacteria with
a lobar consolidation, virus with a bilateral interstitial pattern. Everything is drawn from
one seeded generator: the same arguments give byte-identical files.

`difficulty` (0..1, default 1) sets how much the set looks like the real one rather than a
textbook: it is the renderer's `subtlety` (findings faint, partial, each film its own strength)
and `nuisance` (positioning, body size, exposure, devices, shutters, burned-in markers and text,
all label-free). At 0 the films are the clear ones of before (byte for byte); at 1 a small CNN
no longer scores 1.0 while a ResNet still can, as on the real set. Image size, JPEG quality,
the RGB files and every nuisance are drawn independently of the label, so global statistics
(size, mean brightness, file size) do not predict it (tests/data_prep/test_synth.py checks
that a logistic regression on them stays near chance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from data_prep.errors import ConfigError
from data_prep.synth.common import SynthSummary, claim_output_dir, write_marker
from data_prep.synth.phantom import render_chest_radiograph

KERMANY_DIR = "chest_xray"
SPLITS: tuple[str, ...] = ("train", "val", "test")
LABELS: tuple[str, ...] = ("NORMAL", "PNEUMONIA")
KINDS: tuple[str, ...] = ("bacteria", "virus")  # as spelled in the file names
_PATTERN_OF_KIND = {"bacteria": "bacterial", "virus": "viral"}

# Real split sizes (train 5,216, val 16, test 624 of 5,856) and NORMAL share per split.
_SPLIT_FRACTION = {"train": 5216 / 5856, "val": 16 / 5856, "test": 624 / 5856}
_NORMAL_FRACTION = {"train": 1341 / 5216, "val": 8 / 16, "test": 234 / 624}
_BACTERIA_FRACTION = 0.65
# images per child: pneumonia children have several films, normal ones mostly one
_PNEUMONIA_IMAGES_PER_CHILD = ((1, 2, 3, 4, 5), (0.45, 0.25, 0.15, 0.1, 0.05))
_NORMAL_IMAGES_PER_CHILD = ((1, 2, 3), (0.8, 0.15, 0.05))
_RGB_FRACTION = 0.05
# first patient numbers per split and namespace (the real train/ starts at IM-0115)
_FIRST_NUMBER = {("train", "IM"): 115, ("train", "NORMAL2"): 300, ("test", "IM"): 1, ("test", "NORMAL2"): 5}
# .DS_Store junk, like a zip made on a Mac; one sits among the images.
JUNK_FILES: tuple[str, ...] = (".DS_Store", "train/.DS_Store", "test/.DS_Store", "train/PNEUMONIA/.DS_Store")


@dataclass(frozen=True)
class _ImagePlan:
    split: str
    label: str  # NORMAL / PNEUMONIA
    kind: str | None  # bacteria / virus / None for NORMAL
    name: str  # file name, with .jpeg
    patient: str  # numbering namespace ('train' for train/ and val/, 'test') + patient, for counting
    height_px: int
    width_px: int
    rgb: bool
    jpeg_quality: int
    render_seed: int
    difficulty: float


def synth_kermany(
    out_dir: str | Path,
    n_images: int,
    seed: int = 0,
    size_range_px: tuple[int, int] = (384, 640),
    difficulty: float = 1.0,
) -> SynthSummary:
    """Write a synthetic Kermany dataset under `out_dir`/chest_xray/ in the exact Kaggle layout; return the counts.

    `n_images` over all splits (val gets at least one image per class from 40 images on, test
    at least one per class from 10 on). Image sides are drawn from `size_range_px` (inclusive),
    never square when the range allows. `difficulty` in 0..1: 0 the clear textbook films, 1
    (default) subtle, variable findings among label-free variation, about as hard as the real
    set (see the module docstring). `out_dir` must be missing, empty, or a previous
    synthetic dataset (replaced); any other folder raises ConfigError and is left untouched.

    Summary counts: images, NORMAL, PNEUMONIA, bacteria, virus, rgb, junk, patients, and per
    split s: s/images, s/NORMAL, s/PNEUMONIA, s/bacteria, s/virus, s/patients.
    """
    if n_images < 1:
        raise ConfigError(f"n_images (--images): must be >= 1, got {n_images}")
    if seed < 0:
        raise ConfigError(f"seed (--seed): must be >= 0, got {seed}")
    lo, hi = (int(v) for v in size_range_px)
    if not 32 <= lo <= hi <= 8192:
        raise ConfigError(f"size_range_px: must be (min, max) with 32 <= min <= max <= 8192, got {size_range_px}")
    difficulty = float(difficulty)
    if not 0.0 <= difficulty <= 1.0:
        raise ConfigError(f"difficulty (--difficulty): must be in 0..1, got {difficulty}")
    started = time.perf_counter()
    params = {"n_images": n_images, "seed": seed, "size_range_px": [lo, hi], "difficulty": difficulty}
    out = claim_output_dir(out_dir, "kermany", (KERMANY_DIR,), params)
    rng = np.random.default_rng(seed)
    plans = [replace(p, difficulty=difficulty) for p in _plan_images(rng, n_images, (lo, hi))]

    root = out / KERMANY_DIR
    for split in SPLITS:
        for label in LABELS:
            (root / split / label).mkdir(parents=True)
    for plan in plans:
        _render_and_write(root / plan.split / plan.label / plan.name, plan)
    for junk in JUNK_FILES:
        # a .DS_Store starts with its 'Bud1' magic; the rest is noise
        (root / junk).write_bytes(b"\x00\x00\x00\x01Bud1" + rng.bytes(int(rng.integers(24, 120))))

    counts = _count(plans)
    write_marker(out, "kermany", params, counts)
    return SynthSummary(
        dataset="kermany", out_dir=str(out), seed=seed, counts=counts, elapsed_s=time.perf_counter() - started
    )


def _split_sizes(n: int) -> dict[str, int]:
    n_val = max(2, int(round(n * _SPLIT_FRACTION["val"]))) if n >= 40 else int(round(n * _SPLIT_FRACTION["val"]))
    n_test = max(2 if n >= 10 else 0, int(round(n * _SPLIT_FRACTION["test"])))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _class_sizes(split: str, n: int) -> tuple[int, int, int]:
    """(NORMAL, bacteria, virus) image counts of one split; both labels present when n >= 2."""
    n_normal = int(round(n * _NORMAL_FRACTION[split]))
    if n >= 2:
        n_normal = min(max(n_normal, 1), n - 1)
    n_pneumonia = n - n_normal
    n_bacteria = int(round(n_pneumonia * _BACTERIA_FRACTION))
    if n_pneumonia >= 2 and split != "val":  # val is too small to hold every subtype
        n_bacteria = min(max(n_bacteria, 1), n_pneumonia - 1)
    return n_normal, n_bacteria, n_pneumonia - n_bacteria


def _group(rng: np.random.Generator, n_images: int, sizes: tuple[tuple[int, ...], tuple[float, ...]]) -> list[int]:
    """Images per patient, summing to n_images."""
    groups: list[int] = []
    left = n_images
    while left > 0:
        k = min(int(rng.choice(sizes[0], p=sizes[1])), left)
        groups.append(k)
        left -= k
    return groups


def _image_size(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    """(height, width): mostly landscape like the real films, never square when hi > lo."""
    long_side = int(rng.integers(lo, hi + 1))
    short_side = int(rng.integers(max(lo, int(0.7 * long_side)), long_side + 1))
    if short_side == long_side and hi > lo:
        short_side, long_side = (short_side - 1, long_side) if short_side > lo else (short_side, long_side + 1)
    return (short_side, long_side) if rng.random() < 0.75 else (long_side, short_side)


def _plan_images(rng: np.random.Generator, n_images: int, size_range_px: tuple[int, int]) -> list[_ImagePlan]:
    plans: list[_ImagePlan] = []
    next_person = 1
    next_number = {"IM": _FIRST_NUMBER[("train", "IM")], "NORMAL2": _FIRST_NUMBER[("train", "NORMAL2")]}
    next_k = {"bacteria": 1, "virus": 1}  # per-subtype image counter, running over all splits
    for split, n_split in _split_sizes(n_images).items():
        if split == "test":  # numbering restarts: different children
            next_person = 1
            next_number = {"IM": _FIRST_NUMBER[("test", "IM")], "NORMAL2": _FIRST_NUMBER[("test", "NORMAL2")]}
        namespace = "test" if split == "test" else "train"
        n_normal, n_bacteria, n_virus = _class_sizes(split, n_split)
        entries: list[tuple[str, str | None, str, str]] = []  # (label, kind, name, patient)

        # pneumonia children, subtypes interleaved in the numbering
        children = [("bacteria", k) for k in _group(rng, n_bacteria, _PNEUMONIA_IMAGES_PER_CHILD)]
        children += [("virus", k) for k in _group(rng, n_virus, _PNEUMONIA_IMAGES_PER_CHILD)]
        for i in rng.permutation(len(children)):
            kind, k = children[int(i)]
            person = next_person
            next_person += int(rng.integers(1, 3))  # the real numbering has gaps
            for _ in range(k):
                entries.append(
                    ("PNEUMONIA", kind, f"person{person}_{kind}_{next_k[kind]}.jpeg", f"{namespace}:person{person}")
                )
                next_k[kind] += 1
        for k in _group(rng, n_normal, _NORMAL_IMAGES_PER_CHILD):
            space = "IM" if rng.random() < 0.55 else "NORMAL2"
            number = next_number[space]
            next_number[space] += int(rng.integers(1, 3))
            prefix = "IM" if space == "IM" else "NORMAL2-IM"
            patient = f"{namespace}:{number:04d}" if space == "IM" else f"{namespace}:NORMAL2-{number:04d}"
            for j in range(1, k + 1):
                entries.append(("NORMAL", None, f"{prefix}-{number:04d}-{j:04d}.jpeg", patient))
        for label, kind, name, patient in entries:
            h, w = _image_size(rng, *size_range_px)
            plans.append(
                _ImagePlan(
                    split=split,
                    label=label,
                    kind=kind,
                    name=name,
                    patient=patient,
                    height_px=h,
                    width_px=w,
                    rgb=False,
                    jpeg_quality=int(rng.integers(85, 96)),
                    render_seed=int(rng.integers(0, 2**63 - 1)),
                    difficulty=0.0,
                )
            )
    n_rgb = max(1, int(round(_RGB_FRACTION * len(plans))))
    for i in rng.choice(len(plans), size=n_rgb, replace=False):
        plans[int(i)] = replace(plans[int(i)], rgb=True)
    return plans


def _render_and_write(path: Path, plan: _ImagePlan) -> None:
    rng = np.random.default_rng(plan.render_seed)
    pattern = _PATTERN_OF_KIND[plan.kind] if plan.kind else "none"
    pixels, _ = render_chest_radiograph(
        rng,
        plan.height_px,
        plan.width_px,
        pattern=pattern,
        child=True,
        subtlety=plan.difficulty,
        nuisance=plan.difficulty,
    )
    if plan.rgb:
        # grey content in three slightly different channels, as in the real 3-channel files
        tint = rng.integers(-3, 4, size=3)
        pixels = cv2.merge([cv2.add(pixels, int(t)) if t >= 0 else cv2.subtract(pixels, int(-t)) for t in tint])
    ok, jpeg = cv2.imencode(".jpeg", pixels, [cv2.IMWRITE_JPEG_QUALITY, plan.jpeg_quality])
    if not ok:
        raise ValueError(f"cv2 could not JPEG-encode {path.name} {pixels.shape}")
    path.write_bytes(jpeg.tobytes())


def _count(plans: list[_ImagePlan]) -> dict[str, int]:
    counts = {
        "images": len(plans),
        "NORMAL": sum(p.label == "NORMAL" for p in plans),
        "PNEUMONIA": sum(p.label == "PNEUMONIA" for p in plans),
        "bacteria": sum(p.kind == "bacteria" for p in plans),
        "virus": sum(p.kind == "virus" for p in plans),
        "rgb": sum(p.rgb for p in plans),
        "junk": len(JUNK_FILES),
        "patients": len({p.patient for p in plans}),
    }
    for split in SPLITS:
        in_split = [p for p in plans if p.split == split]
        counts[f"{split}/images"] = len(in_split)
        counts[f"{split}/NORMAL"] = sum(p.label == "NORMAL" for p in in_split)
        counts[f"{split}/PNEUMONIA"] = sum(p.label == "PNEUMONIA" for p in in_split)
        counts[f"{split}/bacteria"] = sum(p.kind == "bacteria" for p in in_split)
        counts[f"{split}/virus"] = sum(p.kind == "virus" for p in in_split)
        counts[f"{split}/patients"] = len({p.patient for p in in_split})
    return counts
