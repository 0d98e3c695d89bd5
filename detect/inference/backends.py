"""What runs the model behind Predictor.forward: eager PyTorch, a TorchScript file, or ONNX Runtime.

    backend = EagerBackend(model, device, amp)           a PneumoniaDetector (any nn.Module with its contract)
    backend = TorchScriptBackend.open(path, device)      a file of `detect export --format torchscript`
    backend = OnnxRuntimeBackend.open(path, "auto")      a file of `detect export --format onnx`
    outputs = backend(tensors)                           list of letterboxed float32 [3, S, S]
                                                         -> per image {boxes [N, 4] (INPUT pixels),
                                                         scores [N], rsna_class_probs [3],
                                                         pneumonia_prob [1], subtype_probs [3]} numpy

Every backend returns the same per-image numpy dicts (outputs_to_numpy's
keys), so the Predictor's steps before and after it (prepare_input, to_raw_prediction, TTA) and
everything above (batch runs, eval, serve) are the same for all three. The exported files take
the wrapper's contract (detect.export.wrapper); they are called with scale 1 and original size
(S, S), which leaves the boxes in input pixels, and the Predictor maps them back as for eager.

`choose_backend(path, requested)` says which backend a checkpoint path runs with: an .onnx file
onnxruntime, a TorchScript archive torchscript, a training or weights-only checkpoint eager;
`requested` (`detect infer --backend`) must agree, or it is a one-line error.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from data_prep.errors import CheckpointError, DetectError
from detect.devices import autocast
from detect.export.metadata import METADATA_FILE
from detect.export.onnx import onnx_metadata, onnxruntime_session
from detect.export.torchscript import load_torchscript
from detect.export.wrapper import INPUT_NAMES, OUTPUT_NAMES

BACKENDS: tuple[str, ...] = ("eager", "torchscript", "onnxruntime")
IMAGE_OUTPUT_KEYS: tuple[str, ...] = ("rsna_class_probs", "pneumonia_prob", "subtype_probs")


def _to_numpy(value: Tensor, columns: int | None = None) -> np.ndarray:
    array = value.detach().float().cpu().numpy()
    return array.reshape(-1, columns) if columns else array.reshape(-1)


def outputs_to_numpy(output: dict[str, Tensor]) -> dict[str, np.ndarray]:
    """One image's model output (torchvision's boxes / scores + IMAGE_OUTPUT_KEYS) as float32 numpy."""
    missing = [k for k in ("boxes", "scores", *IMAGE_OUTPUT_KEYS) if k not in output]
    if missing:
        raise ValueError(
            f"the model's output lacks {', '.join(missing)}: every model must return them (see detect.models.detector)"
        )
    return {
        "boxes": _to_numpy(output["boxes"], 4),
        "scores": _to_numpy(output["scores"]),
        **{key: _to_numpy(output[key]) for key in IMAGE_OUTPUT_KEYS},
    }


def unpad_outputs(named: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The wrapper's batch outputs (OUTPUT_NAMES) -> per-image dicts of outputs_to_numpy's shape."""
    per_image = []
    for i, count in enumerate(np.asarray(named["num_detections"]).reshape(-1)):
        n = int(count)
        per_image.append(
            {
                "boxes": np.asarray(named["boxes"][i, :n], dtype=np.float32).reshape(-1, 4),
                "scores": np.asarray(named["scores"][i, :n], dtype=np.float32).reshape(-1),
                "rsna_class_probs": np.asarray(named["rsna_class_probs"][i], dtype=np.float32).reshape(-1),
                "pneumonia_prob": np.asarray(named["pneumonia_prob"][i], dtype=np.float32).reshape(-1),
                "subtype_probs": np.asarray(named["subtype_probs"][i], dtype=np.float32).reshape(-1),
            }
        )
    return per_image


def identity_letterbox_inputs(batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(images, scale = 1, orig_size_hw = (S, S)): the wrapper then returns input pixels."""
    size = batch.shape[-1]
    count, device = batch.shape[0], batch.device
    return batch, torch.ones(count, device=device), torch.full((count, 2), size, dtype=torch.int64, device=device)


class EagerBackend:
    """The PyTorch module itself, in eval mode (float16 autocast on CUDA when `amp`)."""

    name = "eager"

    def __init__(self, model: torch.nn.Module, device: torch.device, amp: bool = False) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.amp = amp

    @torch.inference_mode()
    def __call__(self, tensors: Sequence[Tensor]) -> list[dict[str, np.ndarray]]:
        self.model.eval()
        batch = [t.to(self.device, non_blocking=True) for t in tensors]
        with autocast(self.device, self.amp):
            outputs = self.model(batch)
        return [outputs_to_numpy(out) for out in outputs]


class TorchScriptBackend:
    """A TorchScript wrapper (`detect export --format torchscript`): a scripted detector takes
    any batch (`batch_size` None), a traced classifier one image per call."""

    name = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule, device: torch.device, batch_size: int | None = None) -> None:
        self.module = module.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def open(cls, path: str | Path, device: torch.device) -> tuple[TorchScriptBackend, dict[str, Any]]:
        module, metadata = load_torchscript(path, device)
        batch = metadata.get("batch_size")
        return cls(module, device, batch if isinstance(batch, int) else None), metadata

    @torch.inference_mode()
    def __call__(self, tensors: Sequence[Tensor]) -> list[dict[str, np.ndarray]]:
        batch = torch.stack([t.to(self.device) for t in tensors])
        step = self.batch_size or len(tensors)
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(tensors), step):
            outputs = self.module(*identity_letterbox_inputs(batch[start : start + step]))
            results += unpad_outputs({name: value.cpu().numpy() for name, value in zip(OUTPUT_NAMES, outputs)})
        return results


class OnnxRuntimeBackend:
    """An ONNX ExportableDetector (`detect export --format onnx`) in ONNX Runtime. The graph's
    batch is fixed (1 for a detector: detect.export.onnx says why): a batch runs in chunks."""

    name = "onnxruntime"

    def __init__(self, session: Any, batch_size: int | None) -> None:
        self.session = session
        self.batch_size = batch_size

    @classmethod
    def open(cls, path: str | Path, device: str) -> tuple[OnnxRuntimeBackend, dict[str, Any]]:
        """`device` as the user gave it (auto | cpu | cuda[:N]): see detect.export.onnx.onnxruntime_session."""
        session = onnxruntime_session(path, device)
        metadata = onnx_metadata(session, path)
        names = tuple(output.name for output in session.get_outputs())
        if names != OUTPUT_NAMES:
            raise CheckpointError(f"{path}: its outputs are {', '.join(names)}, not detect's {', '.join(OUTPUT_NAMES)}")
        batch = session.get_inputs()[0].shape[0]
        return cls(session, batch if isinstance(batch, int) else None), metadata

    def __call__(self, tensors: Sequence[Tensor]) -> list[dict[str, np.ndarray]]:
        batch = torch.stack([t.detach().float().cpu() for t in tensors])
        step = self.batch_size or len(tensors)
        results: list[dict[str, np.ndarray]] = []
        for start in range(0, len(tensors), step):
            inputs = identity_letterbox_inputs(batch[start : start + step])
            outputs = self.session.run(list(OUTPUT_NAMES), {n: v.numpy() for n, v in zip(INPUT_NAMES, inputs)})
            results += unpad_outputs(dict(zip(OUTPUT_NAMES, outputs)))
        return results


def is_torchscript_file(path: Path) -> bool:
    """A TorchScript archive written by `detect export` (a zip holding detect's extra file);
    a training checkpoint is a zip too, without it."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"/extra/{METADATA_FILE}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def file_backend(path: Path) -> str:
    """The backend a checkpoint file runs with, from its suffix (.onnx) or its content."""
    if path.suffix.lower() == ".onnx":
        return "onnxruntime"
    return "torchscript" if is_torchscript_file(path) else "eager"


_WHAT_IT_NEEDS = {
    "eager": "a training or weights-only checkpoint (.pt from `detect train` / `detect export --format weights`)",
    "torchscript": "a file of `detect export --format torchscript`",
    "onnxruntime": "an .onnx file of `detect export --format onnx`",
}


_EXPORT_FORMAT = {"torchscript": "torchscript", "onnxruntime": "onnx"}


def choose_backend(path: Path, requested: str | None) -> str:
    """The backend `path` runs with; a DetectError when `requested` cannot run it."""
    if requested is not None and requested not in BACKENDS:
        raise DetectError(f"--backend is '{requested}'; choose one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    found = file_backend(path)
    if requested is not None and requested != found:
        fix = f"run it with --backend {found}"
        if found == "eager":
            fix += f", or export it first: detect export --checkpoint {path} --format {_EXPORT_FORMAT[requested]}"
        raise DetectError(
            f"--backend {requested} needs {_WHAT_IT_NEEDS[requested]}; {path} is {_WHAT_IT_NEEDS[found]} ({fix})"
        )
    return found
