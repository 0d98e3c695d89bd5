"""`detect export`: a checkpoint -> an ONNX file, a TorchScript file, or a weights-only checkpoint.

    result = export_checkpoint("runs/demo/checkpoints/best.pt", "onnx")     # -> best.onnx beside it

onnx and torchscript files run the wrapper's contract (detect.export.wrapper) and
carry their metadata (detect.export.metadata); each is run once on an example input after it
is written and compared with eager PyTorch (`max_abs_diff`). `detect infer --checkpoint FILE`
takes all three (detect.inference.backends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_prep.errors import DetectError
from detect.export.metadata import export_metadata
from detect.export.onnx import ONNX_BATCH_SIZE, onnxruntime_session, write_onnx
from detect.export.torchscript import load_torchscript, torchscript_batch_size, write_torchscript
from detect.export.weights_only import write_weights_only
from detect.export.wrapper import (
    INPUT_NAMES,
    ExportableClassifier,
    ExportableDetector,
    example_inputs,
    exportable_model,
)
from detect.models.checkpoint import build_model_from_checkpoint, load_checkpoint
from detect.outputs.uids import file_sha256

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript", "weights")
DEFAULT_SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "weights": ".weights.pt"}
BYTES_PER_MB = 1_000_000


@dataclass(frozen=True)
class ExportResult:
    format: str
    source_path: Path
    out_path: Path
    source_size_mb: float
    out_size_mb: float
    max_abs_diff: float | None  # largest output difference to eager PyTorch on the example input

    def summary(self) -> str:
        check = (
            ""
            if self.max_abs_diff is None
            else f"; largest difference to eager PyTorch on an example input {self.max_abs_diff:.2g}"
        )
        return (
            f"wrote {self.out_path} ({self.format}, {self.out_size_mb:.1f} MB; the checkpoint "
            f"{self.source_path} is {self.source_size_mb:.1f} MB){check}"
        )


def default_out_path(checkpoint: Path, fmt: str) -> Path:
    """best.pt -> best.onnx / best.torchscript.pt / best.weights.pt in the same folder."""
    return checkpoint.with_name(checkpoint.stem + DEFAULT_SUFFIXES[fmt])


def build_exportable(checkpoint: Path) -> tuple[ExportableDetector | ExportableClassifier, dict]:
    """The checkpoint's exportable wrapper (CPU, eval) and its metadata."""
    model, cfg, extra = build_model_from_checkpoint(checkpoint, "cpu")
    wrapper = exportable_model(model)
    metadata = export_metadata(
        cfg,
        extra,
        max_detections=wrapper.max_detections,
        batch_size=None,
        source_path=str(checkpoint),
        source_sha256=file_sha256(checkpoint),
    )
    return wrapper, metadata


def _largest_difference(expected: tuple[torch.Tensor, ...], actual: list[np.ndarray]) -> float:
    return max(
        float(np.abs(e.numpy().astype(np.float64) - np.asarray(a, dtype=np.float64)).max(initial=0.0))
        for e, a in zip(expected, actual)
    )


def export_checkpoint(checkpoint: str | Path, fmt: str, out_path: str | Path | None = None) -> ExportResult:
    """Export `checkpoint` as `fmt` (EXPORT_FORMATS) to `out_path` (default: beside it)."""
    if fmt not in EXPORT_FORMATS:
        raise DetectError(f"--format is '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
    source = Path(checkpoint)
    out = Path(out_path) if out_path is not None else default_out_path(source, fmt)
    if out.resolve() == source.resolve():
        raise DetectError(f"--out {out} is the checkpoint itself; choose another file")
    difference = None
    if fmt == "weights":
        write_weights_only(load_checkpoint(source), out)
    else:
        wrapper, metadata = build_exportable(source)
        inputs = example_inputs(wrapper.image_size_px, 1)
        with torch.no_grad():
            expected = wrapper(*inputs)
        if fmt == "onnx":
            metadata["batch_size"] = ONNX_BATCH_SIZE
            write_onnx(wrapper, out, metadata)
            session = onnxruntime_session(out, "cpu")
            actual = session.run(None, {name: value.numpy() for name, value in zip(INPUT_NAMES, inputs)})
        else:
            metadata["batch_size"] = torchscript_batch_size(wrapper)
            write_torchscript(wrapper, out, metadata)
            module, _ = load_torchscript(out, torch.device("cpu"))
            with torch.no_grad():
                actual = [t.numpy() for t in module(*inputs)]
        difference = _largest_difference(expected, actual)
    return ExportResult(
        fmt, source, out, source.stat().st_size / BYTES_PER_MB, out.stat().st_size / BYTES_PER_MB, difference
    )
