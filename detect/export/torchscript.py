"""The TorchScript file: the exportable wrapper (detect.export.wrapper), scripted or traced.

    write_torchscript(wrapper, path, metadata)   one .pt archive, metadata as an extra file
    module, metadata = load_torchscript(path, device)

A detector is scripted, not traced: torchvision's detection code is scriptable (its per-image
loops stay loops), so the file takes any batch (metadata batch_size null); only the image size
S is fixed by the letterbox. A classifier is traced at batch 1 (ExportableClassifier says why;
metadata batch_size 1), and the backend runs a batch image by image.
torch.jit.load(path) runs it without detect's source; `detect infer --backend torchscript` reads
its metadata from the METADATA_FILE extra file.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from data_prep.atomic import atomic_write
from data_prep.errors import CheckpointError
from detect.export.metadata import METADATA_FILE, parse_metadata
from detect.export.wrapper import ExportableClassifier, ExportableDetector, example_inputs

TRACED_BATCH_SIZE = 1


def torchscript_batch_size(wrapper: ExportableDetector | ExportableClassifier) -> int | None:
    """The batch size the file will take (None: any)."""
    return TRACED_BATCH_SIZE if isinstance(wrapper, ExportableClassifier) else None


def write_torchscript(
    wrapper: ExportableDetector | ExportableClassifier, path: str | Path, metadata: dict[str, Any]
) -> Path:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated (FutureWarning); the README says so once
        warnings.simplefilter("ignore", FutureWarning)
        if isinstance(wrapper, ExportableClassifier):
            # the tracer warns about each Python-side shape check; tests/detect/export compares the file with eager
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            with torch.no_grad():
                scripted = torch.jit.trace(wrapper.eval(), example_inputs(wrapper.image_size_px, TRACED_BATCH_SIZE))
        else:
            scripted = torch.jit.script(wrapper.eval())
        torch.jit.save(scripted, buffer, _extra_files={METADATA_FILE: json.dumps(metadata, allow_nan=False)})
    with atomic_write(path, catch=(OSError, RuntimeError)) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def load_torchscript(path: str | Path, device: torch.device) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The scripted module (eval mode, on `device`) and its metadata; CheckpointError naming the file otherwise."""
    files = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():  # torch 2.14's deprecation FutureWarning for torch.jit
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=files)
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable TorchScript file ({first})") from None
    return module.eval(), parse_metadata(files[METADATA_FILE], str(path))
