"""`detect infer`: files -> the one predictor -> boxes in ORIGINAL pixels -> boxes.json (+ CSV, overlays).

One image's way, one function per step:

    collect_input_files(paths)            files and folders -> the list of files to read
    load_image(path)                      DICOM / PNG / JPEG -> LoadedImage (detect.data.files)
    Predictor.predict_raw(pixels)         letterbox, model, map back, clip, TTA -> RawPrediction
                                          (detect.inference.predictor)
    pick_operating_point(...)             which pneumonia threshold applies to this image
    finalize_prediction(raw, ...)         gating, score threshold, shrinking, the decision
    prediction_to_json(...)               one entry of boxes.json (detect.outputs.boxes_json)

`run_inference` strings them together for a batch of files: it reads them in batches (the next
batch is read while the model runs), reports a file it cannot read as an entry with "error"
(and in `InferenceResult.failures`) and goes on with the rest, writes boxes.json, validated
against the shipped JSON Schema, and optionally a Kaggle submission CSV and overlay PNGs.

The pneumonia decision is `pneumonia_probability >= threshold`, with the threshold training
chose on the val split of the image's dataset and stored in the checkpoint: DICOM inputs take
the RSNA one and PNG / JPEG inputs the Kermany one (the formats the two sets come in), when the
checkpoint holds both; `--threshold-from` picks one for every image, `--pneumonia-threshold`
gives a number. Each boxes.json entry names the operating point it used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from data_prep.codestreams import DEFAULT_MAX_IMAGE_PIXELS, check_max_pixels
from data_prep.errors import DetectError
from data_prep.records import DATASETS, KERMANY_SUBTYPES, RSNA_CLASSES, BadFile, DicomHeader
from detect.data.files import LoadedImage, iter_loaded_batches
from detect.inference.postprocess import PostprocessSettings, postprocess_prediction
from detect.inference.predictor import LoadedModel, load_predictor
from detect.outputs.boxes_json import SCHEMA_VERSION, prediction_to_json, settings_to_json, write_boxes_json
from detect.outputs.overlay import draw_overlay, unique_png_name, write_overlay
from detect.outputs.submission import submission_rows, write_submission
from detect.predictions import (
    DEFAULT_PNEUMONIA_THRESHOLD,
    ImagePrediction,
    OperatingPoint,
    RawPrediction,
    box_outcome,
)

IMAGE_SUFFIXES: tuple[str, ...] = (".dcm", ".png", ".jpg", ".jpeg")
RULE_BY_FORMAT = "by input format: DICOM -> rsna, PNG/JPEG -> kermany (else the checkpoint's only one)"
RULE_COMMAND_LINE = "command line (--pneumonia-threshold)"


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
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DetectError(f"{path}: no {', '.join(IMAGE_SUFFIXES)} files found (folders are searched recursively)")
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


# ----------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class ThresholdChoice:
    """How images get their operating point: a number for all (`explicit`), one dataset's
    stored point for all (`dataset`), or by input format (neither)."""

    explicit: float | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.explicit is not None and not (math.isfinite(self.explicit) and 0.0 <= self.explicit <= 1.0):
            raise DetectError(f"pneumonia threshold must lie in [0, 1], got {self.explicit}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise DetectError(f"--threshold-from '{self.dataset}' is unknown; choose one of: {', '.join(DATASETS)}")
        if self.explicit is not None and self.dataset is not None:
            raise DetectError("give either --pneumonia-threshold or --threshold-from, not both")

    def rule(self) -> str:
        if self.explicit is not None:
            return RULE_COMMAND_LINE
        return f"the {self.dataset} threshold for every image (--threshold-from)" if self.dataset else RULE_BY_FORMAT

    def offered(self, stored: dict[str, OperatingPoint]) -> list[OperatingPoint]:
        """The operating points this run may use, as boxes.json's settings list them."""
        if self.explicit is not None:
            return [OperatingPoint("any", self.explicit, RULE_COMMAND_LINE)]
        if self.dataset is not None and self.dataset not in stored and "any" not in stored:
            available = ", ".join(sorted(stored)) or "none"
            raise DetectError(f"--threshold-from {self.dataset}: the checkpoint stores no {self.dataset} threshold "
                              f"(it has: {available}); pass --pneumonia-threshold instead")
        return [stored[k] for k in sorted(stored)] or [default_operating_point()]


def default_operating_point() -> OperatingPoint:
    return OperatingPoint("any", DEFAULT_PNEUMONIA_THRESHOLD,
                          f"default {DEFAULT_PNEUMONIA_THRESHOLD} (the checkpoint stores no threshold)")


def pick_operating_point(stored: dict[str, OperatingPoint], choice: ThresholdChoice, *, is_dicom: bool) -> OperatingPoint:
    """The operating point of one image: see `ThresholdChoice` and the module docstring."""
    if choice.explicit is not None:
        return OperatingPoint("any", choice.explicit, RULE_COMMAND_LINE)
    wanted = choice.dataset or ("rsna" if is_dicom else "kermany")
    if wanted in stored:
        return stored[wanted]
    if "any" in stored:
        return stored["any"]
    if len(stored) == 1 and choice.dataset is None:
        return next(iter(stored.values()))  # a model trained on one dataset: its threshold for all
    return default_operating_point()


def finalize_prediction(raw: RawPrediction, *, source: str, header: DicomHeader | None,
                        settings: PostprocessSettings, point: OperatingPoint) -> ImagePrediction:
    """Apply gating / score threshold / shrinking at `point` and attach the header fields."""
    boxes, scores = postprocess_prediction(raw, point.threshold, settings)
    pneumonia = bool(raw.pneumonia_probability >= point.threshold)
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
        pneumonia=pneumonia,
        operating_point=point,
        box_outcome=box_outcome(pneumonia, len(scores)),
        boxes_xyxy=boxes,
        scores=scores,
    )


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
        n_unboxed = sum(p.box_outcome == "no_box_above_score_thresh" for p in ok)
        text = f"predicted {len(ok)} image(s): {n_pneumonia} pneumonia, {n_boxes} box(es)"
        if n_unboxed:
            text += f" ({n_unboxed} pneumonia image(s) with no box above the score threshold)"
        if self.failures:
            text += f"; {len(self.failures)} file(s) unreadable (listed in the output with their reason)"
        written = [str(self.out_path)] + ([str(self.submission_path)] if self.submission_path else [])
        if self.overlay_paths:
            written.append(f"{len(self.overlay_paths)} overlay PNG(s) in {self.overlay_paths[0].parent}")
        return text + "; wrote " + ", ".join(written)


def predict_files(loaded: LoadedModel, files: Sequence[Path], *, settings: PostprocessSettings, choice: ThresholdChoice,
                  batch_size: int, workers: int, progress: bool,
                  on_image: Callable[[LoadedImage, ImagePrediction], None] | None = None,
                  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                  ) -> tuple[list[ImagePrediction], list[BadFile]]:
    """Every file through the predictor and `finalize_prediction`, in order; unreadable files
    become failure entries. `on_image(loaded_image, prediction)` is called for each readable one."""
    predictions: list[ImagePrediction] = []
    failures: list[BadFile] = []
    batches = iter_loaded_batches(files, batch_size, workers, max_pixels=max_pixels)
    if progress:
        batches = tqdm(batches, total=math.ceil(len(files) / batch_size), unit="batch", desc="infer", leave=False)
    for batch in batches:
        images = [item for item in batch if isinstance(item, LoadedImage)]
        raw = iter(loaded.predictor.predict_raw([image.pixels for image in images]))
        for item in batch:
            if isinstance(item, BadFile):
                failures.append(item)
                predictions.append(ImagePrediction(source=item.path, error=item.reason))
                continue
            point = pick_operating_point(loaded.operating_points, choice, is_dicom=item.header is not None)
            prediction = finalize_prediction(next(raw), source=item.source, header=item.header, settings=settings, point=point)
            predictions.append(prediction)
            if on_image is not None:
                on_image(item, prediction)
    return predictions, failures


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
    threshold_from: str | None = None,
    batch_size: int = 8,
    device: str = "auto",
    workers: int = 2,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> InferenceResult:
    """Predict every file under `paths`, write boxes.json to `out_path` (+ CSV / overlays).

    Raises DetectError (nothing written) when the arguments are bad, the checkpoint is missing
    or unreadable, or not one file could be read; otherwise every unreadable file (a file over
    `max_pixels` included, refused before decoding) is an entry with "error" in the output and
    a BadFile in `failures`, and the rest is predicted.
    """
    if batch_size < 1:
        raise DetectError(f"batch size must be >= 1, got {batch_size}")
    check_max_pixels(max_pixels)
    for target, what in ((out_path, "--out"), (submission_path, "--submission")):
        if target is not None and Path(target).is_dir():
            raise DetectError(f"{target}: {what} must name a file, not a folder")
    choice = ThresholdChoice(explicit=pneumonia_threshold, dataset=threshold_from)
    files = collect_input_files(paths)
    loaded = load_predictor(checkpoint, runs_dir=runs_dir, device=device, settings=settings)
    offered = choice.offered(loaded.operating_points)

    overlay_root = Path(overlay_dir) if overlay_dir is not None else None
    used_names: set[str] = set()
    overlay_paths: list[Path] = []

    def write_one_overlay(item: LoadedImage, prediction: ImagePrediction) -> None:
        if overlay_root is not None:
            name = unique_png_name(Path(item.source).stem, used_names)
            overlay_paths.append(write_overlay(overlay_root / name, draw_overlay(item.pixels, prediction)))

    predictions, failures = predict_files(loaded, files, settings=settings, choice=choice, batch_size=batch_size,
                                          workers=workers, progress=progress, on_image=write_one_overlay,
                                          max_pixels=max_pixels)
    if not any(p.error is None for p in predictions):
        reasons = "; ".join(f"{f.path}: {f.reason}" for f in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise DetectError(f"none of the {len(files)} input file(s) could be read: {reasons}{more}")

    document = {
        "schema_version": SCHEMA_VERSION,
        "model": loaded.model_info,
        "settings": settings_to_json(settings, offered, choice.rule()),
        "images": [prediction_to_json(p) for p in predictions],
    }
    out = write_boxes_json(out_path, document)
    result = InferenceResult(document=document, out_path=out, predictions=predictions, failures=failures, overlay_paths=overlay_paths)
    if submission_path is not None:
        rows, duplicates = submission_rows(predictions)
        result.submission_path = write_submission(submission_path, rows)
        result.warnings += [f"{sid}: patientId appears more than once; only the first file's boxes are in the submission"
                            for sid in duplicates]
    return result
