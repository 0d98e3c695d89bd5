"""The TorchScript file: the ExportableDetector scripted (torch.jit.script), any batch size.

    write_torchscript(wrapper, path, metadata)   one .pt archive, metadata as an extra file

Scripted, not traced: torchvision's detection code is scriptable (its per-image loops stay
loops), so the file takes any batch; only the image size S is fixed by the letterbox.
torch.jit.load(path) runs it without detect's source; `detect infer --backend torchscript` reads
its metadata from the METADATA_FILE extra file.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from data_prep.atomic import atomic_write
from detect.export.metadata import METADATA_FILE
from detect.export.wrapper import ExportableDetector


def write_torchscript(wrapper: ExportableDetector, path: str | Path, metadata: dict[str, Any]) -> Path:
    scripted = torch.jit.script(wrapper.eval())
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
    with atomic_write(path, catch=(OSError, RuntimeError)) as handle:
        handle.write(buffer.getvalue())
    return Path(path)
