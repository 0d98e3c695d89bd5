"""Whole-image classifiers beside the detectors, under the detector's contract.

    model = build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)   # detect.models.build

A classifier is a torchvision classification network (or `basic_cnn`, defined here) whose last
linear layer(s) are replaced by a fresh one with K outputs for the config's `task`:

(the tasks are defined in data_prep.tasks, with the records each one reads)
    task      classes (index order)                                K   labels from the sample target
    kermany2  normal, pneumonia                                    1   target['pneumonia']
    kermany3  normal, bacterial, viral (KERMANY_SUBTYPES)          3   target['subtype']
    rsna2     not pneumonia, pneumonia (Lung Opacity)              1   target['pneumonia']
    rsna3     the three RSNA_CLASSES                               3   target['rsna_class']

Binary tasks have one logit (sigmoid), three-class tasks three (softmax).

`ImageClassifier.forward(images, targets=None)` keeps the detector's contract
(detect.models.detector), so the loop, checkpoints, resume, DDP, validation, `detect eval` and
`detect infer` serve it unchanged:
- input: a list of float32 [3, S, S] tensors in [0, 1] (letterboxed squares); the model
  normalises with its mean / std (buffers in the state dict: weights with another
  normalisation, e.g. torchxrayvision's, keep theirs through a checkpoint);
- training: {'loss_image_classifier': t} (+ 'loss_aux_logits' for inception_v3, times
  AUX_LOSS_WEIGHT) with the loss `self.loss` (detect.models.losses.ClassificationLoss: cross
  entropy unless the trainer sets the one train.loss picks);
- eval: one dict per image with the detector's keys:
      boxes float32 [0, 4], scores float32 [0], labels int64 [0]    a classifier draws no boxes
      rsna_class_probs float32 [3], pneumonia_prob float32 [], subtype_probs float32 [3]
  The keys a task does not predict are filled from what it does (`image_outputs`):
      kermany2 (p = P(pneumonia)):  rsna_class_probs [1-p, 0, p], subtype_probs [1-p, p/2, p/2]
      kermany3 (q = softmax):       subtype_probs q, pneumonia_prob 1 - q_normal,
                                    rsna_class_probs [q_normal, 0, 1 - q_normal]
      rsna2 (p = P(Lung Opacity)):  rsna_class_probs [(1-p)/2, (1-p)/2, p], subtype_probs [1-p, p/2, p/2]
      rsna3 (r = softmax):          rsna_class_probs r, pneumonia_prob r_opacity,
                                    subtype_probs [1-r_opacity, r_opacity/2, r_opacity/2]
  (an even split where the task says nothing: a kermany2 model does not know bacterial from viral).

Hooks for Grad-CAM and gating: `task_logits(batch)`, `pneumonia_score(logits)`, `cam_target_layer()`.
Two-phase transfer learning: `set_backbone_frozen(True)` leaves only the new head trainable and
keeps the backbone's BatchNorm statistics fixed (detect.training.trainer drives the phases).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES
from data_prep.tasks import CLASSIFICATION_TASKS, DETECTION_TASK, TASK_CLASSES, TASK_TARGET_KEY, TASKS, num_outputs
from detect.models.losses import ClassificationLoss

__all__ = [
    "AUX_LOSS_WEIGHT",
    "BasicCNN",
    "CLASSIFICATION_TASKS",
    "DETECTION_TASK",
    "ImageClassifier",
    "TASKS",
    "basic_cnn",
    "build_classifier_network",
    "image_outputs",
    "num_outputs",
    "pneumonia_score",
]

# torchvision's reference recipe weighs Inception's auxiliary loss 0.4 (Szegedy et al. used 0.3).
AUX_LOSS_WEIGHT = 0.4

_OPACITY_INDEX = RSNA_CLASSES.index("Lung Opacity")
_NORMAL_SUBTYPE_INDEX = KERMANY_SUBTYPES.index("normal")


# ------------------------------------------------------------------------------ basic_cnn


class BasicCNN(nn.Module):
    """Three conv + pool blocks and a small dense head: the baseline Kermany notebooks start from.

    Each block Conv3x3 -> BatchNorm -> ReLU -> MaxPool2 (32, 64, 128 channels); then global
    average pooling (instead of the notebooks' Flatten, so the parameter count does not depend
    on the image size), Linear(128, 128) -> ReLU -> Dropout(0.3) -> Linear(128, num_classes).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 3
        for width in (32, 64, 128):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            channels = width
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def basic_cnn(*, weights: None = None, **kwargs: int) -> BasicCNN:
    """The registry's builder for BasicCNN (torchvision's builder signature; no pretrained weights)."""
    if weights is not None:
        raise ValueError("basic_cnn has no pretrained weights")
    return BasicCNN(**kwargs)


# ------------------------------------------------------------------------------ the model


def replace_linear(root: nn.Module, path: str, out_features: int) -> nn.Linear:
    """Replace the nn.Linear at dotted `path` by a fresh one with `out_features` outputs."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    old = getattr(parent, name)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{path} is a {type(old).__name__}, not the nn.Linear head it should be")
    new = nn.Linear(old.in_features, out_features)
    setattr(parent, name, new)
    return new


class ImageClassifier(nn.Module):
    """A classification network (`network`, torchvision's attribute names below it) under the
    detector's forward contract; see the module docstring.

    `head_paths`: the dotted paths (in `network`) of the fresh linear heads: what trains while
    the backbone is frozen. `cam_layer_path`: the last convolutional block (Grad-CAM's target).
    """

    kind = "classifier"

    def __init__(
        self,
        network: nn.Module,
        *,
        model_name: str,
        image_size_px: int,
        task: str,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        head_paths: Sequence[str],
        cam_layer_path: str,
    ) -> None:
        super().__init__()
        if task not in TASK_CLASSES:
            raise ValueError(
                f"task '{task}' is not a classification task; choose one of {', '.join(CLASSIFICATION_TASKS)}"
            )
        self.network = network
        self.model_name = model_name
        self.image_size_px = int(image_size_px)
        self.task = task
        self.num_outputs = num_outputs(task)
        self.head_paths = tuple(head_paths)
        self.cam_layer_path = cam_layer_path
        self.register_buffer("image_mean", torch.tensor(list(image_mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(list(image_std), dtype=torch.float32).view(1, 3, 1, 1))
        # Not a submodule: the loss and its class weights are training settings, not weights
        # (a checkpoint rebuilt for inference has no train split to weigh by).
        self.loss: ClassificationLoss = ClassificationLoss()
        self.backbone_frozen = False

    # -- the detector's contract

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        batch = stack_images(images)
        if self.training:
            labels = self.task_labels(targets, len(images), batch.device)
            output = self.network(self.normalise(batch))
            logits, aux = _split_aux(output)
            losses = {"loss_image_classifier": self.loss(logits, labels)}
            if aux is not None:
                losses["loss_aux_logits"] = self.loss(aux, labels) * AUX_LOSS_WEIGHT
            return losses
        logits = self.task_logits(batch)
        return image_outputs(logits, self.task)

    def task_labels(self, targets: list[dict[str, Tensor]] | None, n_images: int, device: torch.device) -> Tensor:
        """int64 [B] class indices of the task, from the sample targets (detect.data.dataset)."""
        if targets is None:
            raise ValueError("targets are required in training mode (call model.eval() to predict)")
        if len(targets) != n_images:
            raise ValueError(f"got {n_images} images but {len(targets)} targets")
        key = TASK_TARGET_KEY[self.task]
        try:
            labels = torch.stack([torch.as_tensor(t[key]).reshape(()) for t in targets]).to(device, torch.int64)
        except KeyError:
            raise ValueError(f"training targets need '{key}' for task {self.task}: see detect.data.dataset") from None
        bad = (labels < 0) | (labels >= len(TASK_CLASSES[self.task]))
        if bad.any():
            index = int(torch.where(bad)[0][0])
            raise ValueError(
                f"target at index {index} has {key}={int(labels[index])}, not a class of task "
                f"{self.task} (an image of the other dataset?)"
            )
        return labels

    # -- hooks for Grad-CAM and gating

    def normalise(self, batch: Tensor) -> Tensor:
        return (batch - self.image_mean) / self.image_std

    def task_logits(self, batch: Tensor) -> Tensor:
        """[B, 3, S, S] in [0, 1] -> [B, K] logits (normalisation inside; eval-mode outputs only)."""
        logits, _aux = _split_aux(self.network(self.normalise(batch)))
        return logits

    def pneumonia_score(self, logits: Tensor) -> Tensor:
        """[B, K] logits -> [B], differentiable and rising with pneumonia; its sigmoid is pneumonia_prob."""
        return pneumonia_score(logits, self.task)

    def cam_target_layer(self) -> nn.Module:
        """The last convolutional block: where Grad-CAM reads activations and gradients."""
        return self.network.get_submodule(self.cam_layer_path)

    # -- two-phase transfer learning

    def head_parameter_names(self) -> set[str]:
        prefixes = tuple(f"network.{path}." for path in self.head_paths)
        return {name for name, _ in self.named_parameters() if name.startswith(prefixes)}

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Frozen: only the new head(s) keep requires_grad, and the backbone's BatchNorm layers
        stay in eval mode (running statistics fixed, as Keras' trainable=False does); False:
        every parameter trains."""
        head = self.head_parameter_names()
        for name, param in self.named_parameters():
            param.requires_grad_(not frozen or name in head)
        self.backbone_frozen = bool(frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if mode and self.backbone_frozen:
            head_modules = {self.network.get_submodule(path) for path in self.head_paths}
            for module in self.network.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in head_modules:
                    module.eval()
        return self


def stack_images(images: Sequence[Tensor]) -> Tensor:
    """A list of [3, S, S] tensors -> [B, 3, S, S]; a ValueError naming the first odd size."""
    if not images:
        raise ValueError("got no images")
    shape = tuple(images[0].shape)
    for index, image in enumerate(images):
        if image.ndim != 3 or image.shape[0] != 3 or tuple(image.shape) != shape:
            raise ValueError(
                f"image at index {index} has shape {tuple(image.shape)}; a classifier takes "
                f"[3, S, S] images of one size (the first is {shape})"
            )
    return torch.stack(list(images))


def _split_aux(output: Tensor | tuple) -> tuple[Tensor, Tensor | None]:
    """(logits, auxiliary logits or None) of a network's output: Inception returns both in training."""
    if isinstance(output, Tensor):
        return output, None
    logits, aux = output[0], output[1]  # torchvision's InceptionOutputs(logits, aux_logits)
    return logits, aux


def pneumonia_score(logits: Tensor, task: str) -> Tensor:
    """See ImageClassifier.pneumonia_score. binary: the logit; kermany3: logsumexp(bacterial,
    viral) - normal; rsna3: opacity - logsumexp(others). Each is the log-odds of pneumonia_prob."""
    if num_outputs(task) == 1:
        return logits[:, 0]
    if task == "kermany3":
        normal = logits[:, _NORMAL_SUBTYPE_INDEX]
        others = torch.cat([logits[:, :_NORMAL_SUBTYPE_INDEX], logits[:, _NORMAL_SUBTYPE_INDEX + 1 :]], dim=1)
        return torch.logsumexp(others, dim=1) - normal
    opacity = logits[:, _OPACITY_INDEX]
    others = torch.cat([logits[:, :_OPACITY_INDEX], logits[:, _OPACITY_INDEX + 1 :]], dim=1)
    return opacity - torch.logsumexp(others, dim=1)


def image_outputs(logits: Tensor, task: str) -> list[dict[str, Tensor]]:
    """[B, K] logits -> one dict per image with the detector's keys (see the module docstring)."""
    logits = logits.float()
    n = logits.shape[0]
    device = logits.device
    if num_outputs(task) == 1:
        p = logits[:, 0].sigmoid()
        if task == "kermany2":
            rsna = torch.stack([1 - p, torch.zeros_like(p), p], dim=1)
        else:
            rsna = torch.stack([(1 - p) / 2, (1 - p) / 2, p], dim=1)
        subtype = torch.stack([1 - p, p / 2, p / 2], dim=1)
        pneumonia = p
    elif task == "kermany3":
        subtype = logits.softmax(dim=1)
        pneumonia = 1 - subtype[:, _NORMAL_SUBTYPE_INDEX]
        rsna = torch.stack([1 - pneumonia, torch.zeros_like(pneumonia), pneumonia], dim=1)
    else:  # rsna3
        rsna = logits.softmax(dim=1)
        pneumonia = rsna[:, _OPACITY_INDEX]
        subtype = torch.stack([1 - pneumonia, pneumonia / 2, pneumonia / 2], dim=1)
    return [
        {
            "boxes": torch.zeros((0, 4), dtype=torch.float32, device=device),
            "scores": torch.zeros((0,), dtype=torch.float32, device=device),
            "labels": torch.zeros((0,), dtype=torch.int64, device=device),
            "rsna_class_probs": rsna[i],
            "pneumonia_prob": pneumonia[i],
            "subtype_probs": subtype[i],
        }
        for i in range(n)
    ]


def build_classifier_network(
    builder: Callable[..., nn.Module],
    head_paths: Sequence[str],
    n_outputs: int,
    *,
    weights: object = None,
    extra_kwargs: dict | None = None,
) -> nn.Module:
    """torchvision's `builder(weights=weights, **extra_kwargs)` with each linear head at
    `head_paths` replaced by a fresh one with `n_outputs` outputs (ImageNet's 1000 classes go)."""
    network = builder(weights=weights, **(extra_kwargs or {}))
    for path in head_paths:
        replace_linear(network, path, n_outputs)
    return network
