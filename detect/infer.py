"""`detect infer`: files -> model -> boxes in ORIGINAL pixels -> boxes.json (+ CSV, overlays).

One image's way, one function per step:

    collect_input_files(paths)        files and folders -> the list of files to read
    load_image(path)                  DICOM / PNG / JPEG -> LoadedImage (uint8 [H, W] + header)
    image_to_tensor(pixels, size)     letterbox to the model's square input -> float [3, S, S]
    Predictor.predict_raw(pixels)     model (+ flip TTA) -> RawPrediction: boxes mapped back to
                                      the original image (divide by the letterbox scale, clip),
                                      scores before gating, image-level probabilities
    finalize_prediction(raw, ...)     gating, score threshold, shrinking (detect.postprocess)
    prediction_to_json(...)           one entry of boxes.json (schema: schemas/boxes.schema.json)

`run_inference` strings them together for a batch of files: it reads them in batches (the next
batch is read while the model runs), reports a file it cannot read as an entry with "error"
(and in `InferenceResult.failures`) and goes on with the rest, writes boxes.json, validated
against the shipped JSON Schema before it is written, and optionally a Kaggle submission CSV
and overlay PNGs.

Without a checkpoint the best checkpoint most recently written under ./runs is used
(`runs/*/checkpoints/best.pt` by modification time, see detect.checkpoint).

The pneumonia decision is `pneumonia_probability >= pneumonia_threshold`; the threshold is the
one stored in the checkpoint (chosen F1-optimal on the validation split by training or
`detect eval`), else 0.5, unless given explicitly.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from data_prep.errors import DetectError
from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, DicomHeader, empty_boxes
from detect.postprocess import (
    PostprocessSettings,
    hflip_boxes,
    keep_valid_boxes,
    merge_tta_boxes,
    postprocess_boxes,
    to_original_coords,
)

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "boxes.schema.json"
IMAGE_SUFFIXES: tuple[str, ...] = (".dcm", ".png", ".jpg", ".jpeg")
DEFAULT_PNEUMONIA_THRESHOLD = 0.5
THRESHOLD_FROM_CHECKPOINT = "checkpoint (F1-optimal on validation)"
THRESHOLD_DEFAULT = "default 0.5"
THRESHOLD_COMMAND_LINE = "command line"
OVERLAY_MAX_SIDE_PX = 1024
OVERLAY_MIN_SIDE_PX = 512
# Boxes and probabilities are written with these many decimals in boxes.json.
BOX_DECIMALS = 2
PROBABILITY_DECIMALS = 6


# ----------------------------------------------------------------------------------- inputs


def collect_input_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand the command line's paths into files, in a stable order.

    A file is taken as given, whatever its name (it is read, and reported if unreadable).
    A folder is searched recursively for *.dcm, *.png, *.jpg, *.jpeg (any case), sorted;
    other files in it (.DS_Store, CSVs, ...) are ignored. A path that does not exist is kept:
    it becomes a failure entry ("file not found"), like any other unreadable file.
    Raises DetectError when `paths` is empty or a folder holds no image file at all.
    """
    if not paths:
        raise DetectError("no input given: pass DICOM/PNG/JPEG files or folders")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise DetectError(
                    f"{path}: no {', '.join(IMAGE_SUFFIXES)} files found (folders are searched recursively)"
                )
            files.extend(found)
        else:
            files.append(path)
    seen: set[Path] = set()
    unique = []
    for f in files:  # the same file named twice (a file and its folder) is predicted once
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


@dataclass(frozen=True)
class LoadedImage:
    """One readable input: `pixels` uint8 [H, W] (display orientation), `header` for DICOMs."""

    source: str
    pixels: np.ndarray
    header: DicomHeader | None = None

    @property
    def height_px(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width_px(self) -> int:
        return int(self.pixels.shape[1])


def load_image(path: str | Path) -> LoadedImage:
    """Read a DICOM, PNG or JPEG (decided by content, not name). Raises a DetectError subclass."""
    from data_prep.errors import ImageReadError
    from data_prep.images import read_any_image

    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file not found")
    if p.is_dir():
        raise ImageReadError(p, "is a folder, not an image file")
    pixels, header = read_any_image(p)
    return LoadedImage(source=str(path), pixels=pixels, header=header)


def image_to_tensor(pixels: np.ndarray, image_size_px: int, clahe: Any = None) -> tuple[torch.Tensor, float]:
    """uint8 [H, W] -> (float32 [3, S, S] in [0, 1], letterbox scale), exactly as in training.

    detect.datasets.prepare_image: letterbox (data_prep.geometry.letterbox_resize: aspect kept,
    padded right and bottom), CLAHE when the model was trained with it, grey repeated to three
    channels; the model normalises internally.
    """
    from detect.datasets import prepare_image

    return prepare_image(pixels, image_size_px, clahe)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA GPU when there is one, else the CPU; otherwise torch's own name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DetectError(f"device '{name}' is not a valid torch device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectError(f"device '{name}' requested but CUDA is not available on this machine")
    return device


# ---------------------------------------------------------------------------------- predicting


@dataclass(frozen=True)
class RawPrediction:
    """The model's view of one image, before gating / score threshold / shrinking.

    `boxes_xyxy` float32 [N, 4] in ORIGINAL pixels (clipped to the image, TTA merged when on),
    `scores` float32 [N] the detector's box scores; `class_probabilities` float [3] in
    RSNA_CLASSES order, `subtype_probabilities` float [3] in KERMANY_SUBTYPES order,
    `pneumonia_probability` the image-level probability (averaged over TTA views).
    """

    width_px: int
    height_px: int
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_probabilities: np.ndarray
    subtype_probabilities: np.ndarray
    pneumonia_probability: float


def _to_numpy(value: Any, shape_last: int | None = None) -> np.ndarray:
    array = value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float32)
    return array.reshape(-1, shape_last) if shape_last else array.reshape(-1)


class Predictor:
    """A trained model plus its input size and device: uint8 images in, RawPredictions out."""

    def __init__(
        self,
        model: torch.nn.Module,
        image_size_px: int,
        device: torch.device,
        *,
        clahe: Any = None,
        tta: bool = False,
        tta_merge: str = "wbf",
        tta_iou_thresh: float = 0.55,
    ) -> None:
        self.model = model.to(device).eval()
        self.image_size_px = int(image_size_px)
        self.clahe = clahe  # detect.transforms.Clahe when the model was trained with CLAHE
        self.device = device
        self.tta = tta
        self.tta_merge = tta_merge
        self.tta_iou_thresh = tta_iou_thresh

    @torch.inference_mode()
    def _forward(self, images: list[np.ndarray]) -> list[tuple[dict[str, np.ndarray], float]]:
        tensors, scales = [], []
        for pixels in images:
            tensor, scale = image_to_tensor(pixels, self.image_size_px, self.clahe)
            tensors.append(tensor.to(self.device, non_blocking=True))
            scales.append(scale)
        outputs = self.model(tensors)
        results = []
        for out, scale in zip(outputs, scales):
            results.append(({
                "boxes": _to_numpy(out["boxes"], 4),
                "scores": _to_numpy(out["scores"]),
                "rsna_class_probs": _to_numpy(out["rsna_class_probs"]),
                "subtype_probs": _to_numpy(out["subtype_probs"]),
                "pneumonia_prob": _to_numpy(out["pneumonia_prob"]),
            }, scale))
        return results

    def predict_raw(self, images: Sequence[np.ndarray]) -> list[RawPrediction]:
        """Predict a batch of uint8 [H, W] images (any sizes) in one forward pass (two with TTA)."""
        if not images:
            return []
        views = [self._forward(list(images))]
        if self.tta:
            # The ORIGINAL image is flipped before letterboxing, so the padding stays at the right
            # and bottom as in training; boxes then flip back with the original width.
            views.append(self._forward([np.ascontiguousarray(p[:, ::-1]) for p in images]))
        predictions = []
        for i, pixels in enumerate(images):
            height, width = int(pixels.shape[0]), int(pixels.shape[1])
            per_view = []
            for v, view in enumerate(views):
                out, scale = view[i]
                boxes = to_original_coords(out["boxes"], scale, width, height)
                if v == 1:
                    boxes = hflip_boxes(boxes, width)
                per_view.append((*keep_valid_boxes(boxes, out["scores"]), out))
            boxes, scores, _ = per_view[0]
            if len(per_view) == 2:
                boxes, scores = merge_tta_boxes(
                    boxes, scores, per_view[1][0], per_view[1][1], method=self.tta_merge, iou_thresh=self.tta_iou_thresh
                )
            outs = [view_out for _, _, view_out in per_view]
            predictions.append(RawPrediction(
                width_px=width,
                height_px=height,
                boxes_xyxy=boxes,
                scores=scores,
                class_probabilities=np.mean([o["rsna_class_probs"] for o in outs], axis=0),
                subtype_probabilities=np.mean([o["subtype_probs"] for o in outs], axis=0),
                pneumonia_probability=float(np.mean([o["pneumonia_prob"][0] for o in outs])),
            ))
        return predictions


@dataclass(frozen=True)
class LoadedModel:
    """A predictor and what boxes.json says about it."""

    predictor: Predictor
    checkpoint_path: Path
    config: Any  # detect.config.Config stored in the checkpoint
    model_info: dict[str, Any]
    checkpoint_threshold: float | None


def load_model(
    checkpoint: str | Path | None, *, runs_dir: str | Path = "runs", device: str = "auto", settings: PostprocessSettings = PostprocessSettings()
) -> LoadedModel:
    """Find (when `checkpoint` is None) and load a checkpoint into a Predictor on `device`."""
    from detect.checkpoint import build_model_from_checkpoint, find_latest_best_checkpoint, software_versions
    from detect.transforms import Clahe

    path = Path(checkpoint) if checkpoint is not None else find_latest_best_checkpoint(runs_dir)
    torch_device = resolve_device(device)
    model, cfg, extra = build_model_from_checkpoint(path, torch_device)
    augment = cfg.data.augment
    predictor = Predictor(
        model, cfg.data.image_size_px, torch_device,
        clahe=Clahe(augment.clahe_clip_limit) if augment.clahe else None,
        tta=settings.tta, tta_merge=settings.tta_merge, tta_iou_thresh=settings.tta_iou_thresh,
    )
    epoch = extra.get("epoch")
    threshold = extra.get("pneumonia_threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 <= threshold <= 1):
        threshold = None
    info = {
        "name": cfg.model.name,
        "checkpoint": str(path),
        "checkpoint_epoch": int(epoch) if isinstance(epoch, (int, float)) else None,
        "image_size_px": int(cfg.data.image_size_px),
        "config_name": cfg.name,
        "detect_version": software_versions()["detect"],
    }
    return LoadedModel(predictor, path, cfg, info, float(threshold) if threshold is not None else None)


def choose_threshold(explicit: float | None, from_checkpoint: float | None) -> tuple[float, str]:
    """(pneumonia decision threshold, its source as written in boxes.json)."""
    if explicit is not None:
        if not 0.0 <= explicit <= 1.0:
            raise DetectError(f"pneumonia threshold must lie in [0, 1], got {explicit}")
        return float(explicit), THRESHOLD_COMMAND_LINE
    if from_checkpoint is not None:
        return float(from_checkpoint), THRESHOLD_FROM_CHECKPOINT
    return DEFAULT_PNEUMONIA_THRESHOLD, THRESHOLD_DEFAULT


# --------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ImagePrediction:
    """One image's final prediction (after post-processing), or its failure (`error` set).

    `boxes_xyxy` float32 [N, 4] in ORIGINAL pixels by descending `scores` float32 [N].
    """

    source: str
    error: str | None = None
    patient_id: str | None = None
    sop_instance_uid: str | None = None
    view_position: str | None = None
    width_px: int | None = None
    height_px: int | None = None
    class_probabilities: dict[str, float] | None = None
    subtype_probabilities: dict[str, float] | None = None
    pneumonia_probability: float | None = None
    pneumonia: bool | None = None
    boxes_xyxy: np.ndarray = field(default_factory=empty_boxes)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    @property
    def submission_id(self) -> str:
        """The Kaggle patientId: the DICOM PatientID, else the file name without extension."""
        return self.patient_id or Path(self.source).stem


def finalize_prediction(
    raw: RawPrediction,
    *,
    source: str,
    header: DicomHeader | None,
    settings: PostprocessSettings,
    pneumonia_threshold: float,
) -> ImagePrediction:
    """Apply gating / score threshold / shrinking to a RawPrediction and attach the header fields."""
    boxes, scores = postprocess_boxes(
        raw.boxes_xyxy,
        raw.scores,
        pneumonia_probability=raw.pneumonia_probability,
        pneumonia_threshold=pneumonia_threshold,
        settings=settings,
        width_px=raw.width_px,
        height_px=raw.height_px,
    )
    return ImagePrediction(
        source=source,
        patient_id=(header.patient_id or None) if header is not None else None,
        sop_instance_uid=(header.sop_instance_uid or None) if header is not None else None,
        view_position=(header.view_position or None) if header is not None else None,
        width_px=raw.width_px,
        height_px=raw.height_px,
        class_probabilities={n: float(p) for n, p in zip(RSNA_CLASSES, raw.class_probabilities)},
        subtype_probabilities={n: float(p) for n, p in zip(KERMANY_SUBTYPES, raw.subtype_probabilities)},
        pneumonia_probability=float(raw.pneumonia_probability),
        pneumonia=bool(raw.pneumonia_probability >= pneumonia_threshold),
        boxes_xyxy=boxes,
        scores=scores,
    )


def _probability(value: float) -> float:
    return round(min(max(float(value), 0.0), 1.0), PROBABILITY_DECIMALS)


def boxes_to_json(boxes_xyxy: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    """[{'x', 'y', 'width', 'height', 'score'}] with (x, y) the top-left corner, in pixels.

    The corners are rounded first and the size derived from them, so x + width stays within
    the image whenever the xyxy box does.
    """
    out = []
    for (x1, y1, x2, y2), score in zip(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4), scores):
        x1, y1, x2, y2 = (round(float(v), BOX_DECIMALS) for v in (x1, y1, x2, y2))
        width, height = round(x2 - x1, BOX_DECIMALS), round(y2 - y1, BOX_DECIMALS)
        if width > 0 and height > 0:  # postprocess drops boxes below MIN_BOX_SIZE_PX, so this always holds
            out.append({"x": x1, "y": y1, "width": width, "height": height, "score": _probability(score)})
    return out


def prediction_to_json(prediction: ImagePrediction) -> dict[str, Any]:
    """One `images[]` entry of boxes.json (fixed keys; prediction fields null on failure)."""
    if prediction.error is not None:
        return {
            "source": prediction.source, "patient_id": None, "sop_instance_uid": None,
            "image_width_px": None, "image_height_px": None, "view_position": None,
            "class_probabilities": None, "subtype_probabilities": None,
            "pneumonia_probability": None, "pneumonia": None, "boxes": None,
            "error": prediction.error,
        }
    return {
        "source": prediction.source,
        "patient_id": prediction.patient_id,
        "sop_instance_uid": prediction.sop_instance_uid,
        "image_width_px": prediction.width_px,
        "image_height_px": prediction.height_px,
        "view_position": prediction.view_position,
        "class_probabilities": {k: _probability(v) for k, v in (prediction.class_probabilities or {}).items()},
        "subtype_probabilities": {k: _probability(v) for k, v in (prediction.subtype_probabilities or {}).items()},
        "pneumonia_probability": _probability(prediction.pneumonia_probability or 0.0),
        "pneumonia": bool(prediction.pneumonia),
        "boxes": boxes_to_json(prediction.boxes_xyxy, prediction.scores),
        "error": None,
    }


def settings_to_json(settings: PostprocessSettings, pneumonia_threshold: float, threshold_source: str) -> dict[str, Any]:
    values = settings.to_dict()
    return {
        "score_thresh": values["score_thresh"],
        "pneumonia_threshold": float(pneumonia_threshold),
        "pneumonia_threshold_source": threshold_source,
        "gate": values["gate"],
        "drop_below_threshold": values["drop_below_threshold"],
        "shrink_factor": values["shrink_factor"],
        "tta": values["tta"],
        "tta_merge": values["tta_merge"],
        "tta_iou_thresh": values["tta_iou_thresh"],
    }


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema of boxes.json (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


def validate_output(document: dict[str, Any]) -> None:
    """Validate a boxes.json document against the schema, plus what JSON Schema cannot say:
    every box lies inside its image. Raises ValueError with the first problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "<root>"
        raise ValueError(f"boxes.json does not match its schema at {where}: {first.message}")
    tolerance = 10.0 ** -BOX_DECIMALS
    for i, image in enumerate(document["images"]):
        for j, box in enumerate(image.get("boxes") or []):
            if box["x"] + box["width"] > image["image_width_px"] + tolerance or box["y"] + box["height"] > image["image_height_px"] + tolerance:
                raise ValueError(f"boxes.json: images/{i}/boxes/{j} extends outside the {image['image_width_px']}x{image['image_height_px']} image")


# --------------------------------------------------------------------------------- overlays


def draw_overlay(
    pixels: np.ndarray,
    prediction: ImagePrediction,
    *,
    max_side_px: int = OVERLAY_MAX_SIDE_PX,
    min_side_px: int = OVERLAY_MIN_SIDE_PX,
    pneumonia_threshold: float | None = None,
) -> np.ndarray:
    """BGR uint8 image: the radiograph with the boxes (red, score above each) and the decision
    and class probabilities written top-left. The longest side is brought into
    [min_side_px, max_side_px] (aspect kept) so that the text stays legible on small images."""
    import cv2

    height, width = pixels.shape[:2]
    longest = float(max(height, width))
    factor = min(1.0, max_side_px / longest) if longest >= min_side_px else min_side_px / longest
    interpolation = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    gray = pixels if factor == 1.0 else cv2.resize(pixels, size, interpolation=interpolation)
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    side = max(canvas.shape[:2])
    font_scale = max(0.35, side / 1600.0)
    thickness = max(1, round(side / 400))
    red = (0, 0, 255)

    def label(text: str, x: int, y: int, colour: tuple[int, int, int]) -> None:
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        x = int(min(max(x, 0), max(canvas.shape[1] - tw - 2, 0)))
        y = int(min(max(y, th + 2), canvas.shape[0] - base))
        cv2.rectangle(canvas, (x, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
        cv2.putText(canvas, text, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, 1, cv2.LINE_AA)

    for box, score in zip(prediction.boxes_xyxy * factor, prediction.scores):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), red, thickness)
        label(f"{float(score):.2f}", x1, y1 - 3, red)

    decision = "PNEUMONIA" if prediction.pneumonia else "no pneumonia"
    thr = f" (threshold {pneumonia_threshold:.2f})" if pneumonia_threshold is not None else ""
    lines = [f"{decision}: p={prediction.pneumonia_probability or 0.0:.3f}{thr}"]
    lines += [f"{name}: {p:.3f}" for name, p in (prediction.class_probabilities or {}).items()]
    line_height = int(cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][1] * 1.8) + 2
    for k, text in enumerate(lines):
        label(text, 2, (k + 1) * line_height, (0, 255, 255) if k == 0 else (255, 255, 255))
    return canvas


def _unique_name(stem: str, used: set[str]) -> str:
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}_{n}.png"
    used.add(name)
    return name


def write_overlay(path: Path, canvas_bgr: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas_bgr):
        raise DetectError(f"{path}: cannot write overlay PNG")
    return path


# -------------------------------------------------------------------------------- the batch


@dataclass
class InferenceResult:
    """What `run_inference` did: the document written, where, and which files failed."""

    document: dict[str, Any]
    out_path: Path
    predictions: list[ImagePrediction]
    failures: list[BadFile]
    submission_path: Path | None = None
    overlay_paths: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_succeeded(self) -> int:
        return sum(p.error is None for p in self.predictions)

    def summary(self) -> str:
        """One line for the terminal: counts and the files written."""
        ok = [p for p in self.predictions if p.error is None]
        n_pneumonia = sum(bool(p.pneumonia) for p in ok)
        n_boxes = sum(len(p.scores) for p in ok)
        text = f"predicted {len(ok)} image(s): {n_pneumonia} pneumonia, {n_boxes} box(es)"
        if self.failures:
            text += f"; {len(self.failures)} file(s) unreadable (listed in the output with their reason)"
        written = [str(self.out_path)] + ([str(self.submission_path)] if self.submission_path else [])
        if self.overlay_paths:
            written.append(f"{len(self.overlay_paths)} overlay PNG(s) in {self.overlay_paths[0].parent}")
        return text + "; wrote " + ", ".join(written)


def _load_or_fail(path: Path) -> LoadedImage | BadFile:
    try:
        return load_image(path)
    except DetectError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        return BadFile(path=str(path), reason=reason)


def iter_loaded_batches(files: Sequence[Path], batch_size: int, workers: int = 2) -> Iterator[list[LoadedImage | BadFile]]:
    """Yield the files read in batches of `batch_size`; the next batch is read in background
    threads while the caller works on the current one. Unreadable files come back as BadFile."""
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(_load_or_fail, f) for f in batches[0]]
        for k in range(len(batches)):
            current = pending
            pending = [pool.submit(_load_or_fail, f) for f in batches[k + 1]] if k + 1 < len(batches) else []
            yield [future.result() for future in current]


def run_inference(
    paths: Sequence[str | Path],
    *,
    out_path: str | Path,
    checkpoint: str | Path | None = None,
    runs_dir: str | Path = "runs",
    submission_path: str | Path | None = None,
    overlay_dir: str | Path | None = None,
    settings: PostprocessSettings = PostprocessSettings(),
    pneumonia_threshold: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
    workers: int = 2,
    progress: bool = False,
) -> InferenceResult:
    """Predict every file under `paths`, write boxes.json to `out_path` (+ CSV / overlays).

    Raises DetectError (nothing written) when the arguments are bad, the checkpoint is missing
    or unreadable, or not one file could be read; otherwise every unreadable file is an entry
    with "error" in the output and a BadFile in `failures`, and the rest is predicted.
    """
    if batch_size < 1:
        raise DetectError(f"batch size must be >= 1, got {batch_size}")
    for target, what in ((out_path, "--out"), (submission_path, "--submission")):
        if target is not None and Path(target).is_dir():
            raise DetectError(f"{target}: {what} must name a file, not a folder")
    files = collect_input_files(paths)
    loaded = load_model(checkpoint, runs_dir=runs_dir, device=device, settings=settings)
    threshold, threshold_source = choose_threshold(pneumonia_threshold, loaded.checkpoint_threshold)

    overlay_root = Path(overlay_dir) if overlay_dir is not None else None
    used_names: set[str] = set()
    overlay_paths: list[Path] = []
    predictions: list[ImagePrediction] = []
    failures: list[BadFile] = []
    batches = iter_loaded_batches(files, batch_size, workers)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=math.ceil(len(files) / batch_size), unit="batch", desc="infer", leave=False)
    for batch in batches:
        images = [item for item in batch if isinstance(item, LoadedImage)]
        raw = iter(loaded.predictor.predict_raw([image.pixels for image in images]))
        for item in batch:
            if isinstance(item, BadFile):
                failures.append(item)
                predictions.append(ImagePrediction(source=item.path, error=item.reason))
                continue
            prediction = finalize_prediction(next(raw), source=item.source, header=item.header, settings=settings, pneumonia_threshold=threshold)
            predictions.append(prediction)
            if overlay_root is not None:
                name = _unique_name(Path(item.source).stem, used_names)
                canvas = draw_overlay(item.pixels, prediction, pneumonia_threshold=threshold)
                overlay_paths.append(write_overlay(overlay_root / name, canvas))

    if not any(p.error is None for p in predictions):
        reasons = "; ".join(f"{f.path}: {f.reason}" for f in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise DetectError(f"none of the {len(files)} input file(s) could be read: {reasons}{more}")

    document = {
        "schema_version": SCHEMA_VERSION,
        "model": loaded.model_info,
        "settings": settings_to_json(settings, threshold, threshold_source),
        "images": [prediction_to_json(p) for p in predictions],
    }
    validate_output(document)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")

    result = InferenceResult(document=document, out_path=out, predictions=predictions, failures=failures, overlay_paths=overlay_paths)
    if submission_path is not None:
        result.submission_path, duplicates = write_predictions_csv(submission_path, predictions)
        result.warnings += [f"{sid}: patientId appears more than once; only the first file's boxes are in the submission" for sid in duplicates]
    return result


def write_predictions_csv(path: str | Path, predictions: Iterable[ImagePrediction]) -> tuple[Path, list[str]]:
    """Kaggle submission of the successful predictions -> (path, patientIds that were duplicated).

    Failed files have no row (they have no prediction). A patientId seen twice keeps its first row.
    """
    from detect.submission import SubmissionRow, write_submission

    rows, seen, duplicates = [], set(), []
    for p in predictions:
        if p.error is not None:
            continue
        sid = p.submission_id
        if sid in seen:
            duplicates.append(sid)
            continue
        seen.add(sid)
        rows.append(SubmissionRow(sid, p.boxes_xyxy, p.scores))
    return write_submission(path, rows), duplicates
