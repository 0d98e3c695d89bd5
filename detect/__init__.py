"""detect: chest X-ray pneumonia detection on RSNA DICOMs and Kermany JPEGs (the torch layer).

The layers and the one rule (imports run downward only) are drawn in docs/architecture.md;
tests/detect/test_layering.py checks them. The Python API is one class:

    from detect import Detector
    entry = Detector.from_checkpoint("runs/demo/checkpoints/best.pt").predict("scan.dcm")

`Detector` is imported on first use, so that `import detect.config` (reading a recipe) and
`detect --help` do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detect._version import __version__

if TYPE_CHECKING:
    from detect.inference.api import Detector

__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from detect.inference.api import Detector

        return Detector
    raise AttributeError(f"module 'detect' has no attribute '{name}'")
