"""InferenceSettings: every choice that decides a prediction, in one frozen record checked at construction.

Training has `Config`; inference has this. `detect infer` builds it from its flags, the Python
API (`Detector.from_checkpoint(path, settings)` or keyword overrides) takes it, `detect serve`
holds the server's defaults and derives one per request from the request's query fields, and
`detect infer --dicomweb` passes it on. The resume fingerprint of `detect infer` is computed
from the fields that decide an entry.

Each field says, in its metadata, how a user reaches it:

    flag       the `detect infer` option (the CLI test checks that each field has its flag)
    request    True: also a query field of `POST /v1/predict` (the value for one request)
    decides    True: changes what an entry says, so part of the resume fingerprint

Adding an option: one field here (with its metadata and check) plus its CLI flag; serve's
query fields and the fingerprint follow from the metadata.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from data_prep.codestreams import megapixels_to_pixels
from data_prep.errors import ConfigError, DetectError
from detect.inference.backends import BACKENDS
from detect.inference.thresholds import ThresholdChoice
from detect.predictions import PostprocessSettings

DEVICE_PATTERN_HELP = "auto, cpu, cuda or cuda:N"
# Requests name their options as text; these spellings are read as booleans.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _setting(default: Any, flag: str, *, request: bool = False, decides: bool = False) -> Any:
    return field(default=default, metadata={"flag": flag, "request": request, "decides": decides})


@dataclass(frozen=True)
class InferenceSettings:
    """How images become predictions (defaults: those of `detect infer`)."""

    # --- the decision: post-processing and the operating point
    score_thresh: float = _setting(0.3, "--score-thresh", request=True, decides=True)
    gate: bool = _setting(True, "--gate", decides=True)  # box score x image pneumonia probability
    drop_below_threshold: bool = _setting(True, "--drop-below-threshold", decides=True)
    shrink_factor: float = _setting(0.875, "--shrink", decides=True)
    tta: bool = _setting(False, "--tta", request=True, decides=True)
    tta_merge: str = _setting("wbf", "--tta-merge", decides=True)
    tta_iou_thresh: float = _setting(0.55, "--tta-iou", decides=True)
    pneumonia_threshold: float | None = _setting(None, "--pneumonia-threshold", request=True, decides=True)
    threshold_from: str | None = _setting(None, "--threshold-from", request=True, decides=True)
    # --- how it runs
    backend: str | None = _setting(None, "--backend")  # None: what the checkpoint file is
    device: str = _setting("auto", "--device")
    batch_size: int = _setting(8, "--batch-size")
    workers: int | None = _setting(None, "--threads")  # reader threads; None: by device
    max_megapixels: float = _setting(100.0, "--max-megapixels")
    # --- what is written besides the predictions
    anonymize: bool = _setting(False, "--anonymize", decides=True)
    submission_path: Path | None = _setting(None, "--submission")
    overlay_dir: Path | None = _setting(None, "--overlay")
    dicom_sr_dir: Path | None = _setting(None, "--dicom-sr")
    dicom_gsps_dir: Path | None = _setting(None, "--dicom-gsps")
    explain_dir: Path | None = _setting(None, "--explain")

    def __post_init__(self) -> None:
        self.postprocess  # noqa: B018 (its own checks: thresholds, shrink, TTA merge)
        self.threshold_choice  # noqa: B018
        if self.backend is not None and self.backend not in BACKENDS:
            raise ConfigError(f"--backend is '{self.backend}'; choose one of {', '.join(BACKENDS)}")
        device = self.device.strip().lower() if isinstance(self.device, str) else ""
        if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"--device is '{self.device}'; use {DEVICE_PATTERN_HELP}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or not 1 <= self.batch_size <= 4096
        ):
            raise ConfigError(f"--batch-size must be a whole number in 1..4096, got {self.batch_size!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 0 <= self.workers <= 256
        ):
            raise ConfigError(f"--threads must be a whole number in 0..256 (0: read in turn), got {self.workers!r}")
        megapixels_to_pixels(self.max_megapixels)
        if self.anonymize and self.submission_path is not None:
            raise DetectError(
                "--anonymize and --submission: a Kaggle submission is keyed by patientId; drop one of them"
            )
        for f in dataclasses.fields(self):
            if f.type == "Path | None" and getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, Path(getattr(self, f.name)))

    @property
    def postprocess(self) -> PostprocessSettings:
        """The post-processing part, as detect.inference.postprocess and the outputs take it."""
        return PostprocessSettings(
            score_thresh=self.score_thresh,
            gate=self.gate,
            drop_below_threshold=self.drop_below_threshold,
            shrink_factor=self.shrink_factor,
            tta=self.tta,
            tta_merge=self.tta_merge,
            tta_iou_thresh=self.tta_iou_thresh,
        )

    @property
    def threshold_choice(self) -> ThresholdChoice:
        """How each image gets its operating point (detect.inference.thresholds)."""
        return ThresholdChoice(explicit=self.pneumonia_threshold, dataset=self.threshold_from)

    @property
    def max_pixels(self) -> int:
        """`max_megapixels` as the readers' limit in pixels."""
        return megapixels_to_pixels(self.max_megapixels)

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with `changes` (checked again); an unknown name is a ConfigError."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown inference setting(s): {', '.join(unknown)}; known: {', '.join(field_names())}")
        return dataclasses.replace(self, **changes)

    def decision_fields(self) -> dict[str, Any]:
        """The fields that change what an entry says (the resume fingerprint's settings)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("decides")}

    def for_request(self, query: Mapping[str, str]) -> InferenceSettings:
        """These settings with a request's query fields applied (text values, as a URL carries
        them); fields that are not request fields are left to the caller. A bad value is a
        DetectError naming the field."""
        changes = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("request") and query.get(f.name) not in (None, ""):
                changes[f.name] = _parse_text(f.name, f.type, str(query[f.name]))
        return self.replace(**changes) if changes else self


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(InferenceSettings)]


def cli_flags() -> dict[str, str]:
    """{field: its `detect infer` flag}."""
    return {f.name: f.metadata["flag"] for f in dataclasses.fields(InferenceSettings)}


def request_fields() -> list[str]:
    """The fields a `POST /v1/predict` query may set."""
    return [f.name for f in dataclasses.fields(InferenceSettings) if f.metadata.get("request")]


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _parse_text(name: str, type_text: str, text: str) -> Any:
    """A query field's text -> the field's type (bool, float, str; `| None` types take 'none')."""
    optional = type_text.endswith("| None")
    base = type_text.replace("| None", "").strip()
    value = text.strip()
    if optional and value.lower() in ("none", "null"):
        return None
    if base == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise DetectError(f"{name}: {value[:40]!r} is not a boolean (true/false)")
    if base == "float":
        try:
            number = float(value)
        except ValueError:
            raise DetectError(f"{name}: {value[:40]!r} is not a number") from None
        if not math.isfinite(number):
            raise DetectError(f"{name}: {value[:40]!r} is not a finite number")
        return number
    if base == "int":
        try:
            return int(value)
        except ValueError:
            raise DetectError(f"{name}: {value[:40]!r} is not a whole number") from None
    return value[:200]
