"""The ONNX file: the exportable wrapper (detect.export.wrapper) traced by torch.onnx's TorchScript-based exporter.

    write_onnx(wrapper, path, metadata)     one .onnx file, metadata in its metadata_props
    onnxruntime_session(path, device)       an ONNX Runtime session on it (CPU, or CUDA when asked
                                            for and onnxruntime-gpu offers it)
    onnx_metadata(session, path)            its metadata, parsed (detect.export.metadata)

onnx (writing) and onnxruntime (running) are the `export` extra: without them this module
still imports, and the step that needs one says so in one line.

Why the TorchScript-based exporter (dynamo=False): torch.export, under the dynamo exporter,
stops at torchvision's batched_nms, which branches on the number of boxes (a data-dependent
size: `boxes.numel() > 4000`); the tracing exporter records the branch taken and exports
roi_align and nms as ONNX RoiAlign / NonMaxSuppression, which ONNX Runtime runs.
Why batch 1: torchvision's RPN and box post-processing loop over the images of a batch in
Python, and a trace unrolls that loop for the traced batch size, so the graph takes one image;
detect.inference.backends runs a batch image by image. The image size S is fixed too (the
model's input size: the letterbox happens before).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from data_prep.atomic import atomic_write
from data_prep.errors import CheckpointError, DetectError
from detect.export.metadata import METADATA_KEY, parse_metadata
from detect.export.wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableClassifier, ExportableDetector, example_inputs
from detect.extras import require

if TYPE_CHECKING:
    import onnxruntime

ONNX_OPSET = 17
ONNX_BATCH_SIZE = 1


def write_onnx(wrapper: ExportableDetector | ExportableClassifier, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Trace `wrapper` at batch 1 into `path` (atomically), with `metadata` as JSON under
    metadata_props[METADATA_KEY]. Needs the onnx package (the export extra)."""
    require("export", "detect export --format onnx", ("onnx",))
    import onnx  # the export extra: imported only by the command that writes a file

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about every Python-side shape read in torchvision's detection code;
        # the graph is checked against eager PyTorch by tests/detect/export instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper.eval(),
            example_inputs(wrapper.image_size_px, ONNX_BATCH_SIZE),
            buffer,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=ONNX_OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, allow_nan=False)
    model.producer_name = "detect"
    with atomic_write(path) as handle:
        handle.write(model.SerializeToString())
    return Path(path)


def onnxruntime_session(path: str | Path, device: str = "cpu") -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on `path` for `device` (cpu; cuda / cuda:N: ONNX Runtime's CUDA
    provider, which onnxruntime-gpu has; auto: CUDA when that provider is there, else CPU).
    A DetectError line when onnxruntime is missing, a CheckpointError naming the file when it
    is not a readable ONNX model."""
    require("export", "--backend onnxruntime", ("onnxruntime",))
    import onnxruntime  # the export extra: imported only when an .onnx file runs

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if not has_cuda:
            raise DetectError(
                f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu, or use --device cpu)"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    elif device == "auto" and has_cuda:
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeException types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({first})") from None


def onnx_metadata(session: onnxruntime.InferenceSession, path: str | Path) -> dict[str, Any]:
    return parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), str(path))
