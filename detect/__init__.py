"""detect: chest X-ray pneumonia detection on RSNA DICOMs and Kermany JPEGs (the torch layer).

The layers and the one rule (imports run downward only) are drawn in docs/architecture.md;
tests/detect/test_layering.py checks them. The Python API:

    from detect import Detector, Prediction, InferenceSettings, DetectError, __version__
    prediction = Detector.from_checkpoint("runs/demo/checkpoints/best.pt").predict("scan.dcm")

`Detector`, `Prediction` and `InferenceSettings` are imported on first use, so that
`import detect.config` (reading a recipe) and `detect --help` do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from data_prep.errors import DetectError
from detect._version import __version__

if TYPE_CHECKING:
    from detect.inference.api import Detector
    from detect.inference.prediction import Prediction
    from detect.inference.settings import InferenceSettings

__all__ = ["DetectError", "Detector", "InferenceSettings", "Prediction", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from detect.inference.api import Detector

        return Detector
    if name == "Prediction":
        from detect.inference.prediction import Prediction

        return Prediction
    if name == "InferenceSettings":
        from detect.inference.settings import InferenceSettings

        return InferenceSettings
    raise AttributeError(f"module 'detect' has no attribute '{name}'")
