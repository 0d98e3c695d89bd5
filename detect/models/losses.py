"""The classifiers' losses, as train.loss picks them: ce | weighted_ce | focal.

    loss = ClassificationLoss("weighted_ce", class_weights=inverse_frequency_weights(counts))
    value = loss(logits, labels)        # logits [B, K] (K = 1: one binary logit), labels int64 [B]
    loss = build_classification_loss(cfg.train.loss, cfg.train.focal_gamma, cfg.task, train_records)

- ce: cross-entropy (binary cross-entropy on the one logit of a binary task).
- weighted_ce: the same with a weight per class, averaged as torch's cross_entropy(weight=)
  does: sum_i w[y_i] * l_i / sum_i w[y_i]. The weights are the inverse class frequencies of the
  TRAIN split, N / (C * n_c) (scikit-learn's 'balanced'), so each class weighs as much in total.
- focal: Lin et al.'s focal loss, mean of -(1 - p_t)^gamma * log(p_t) (p_t the probability of
  the true class; sigmoid for one logit, softmax otherwise), unweighted; gamma = 0 is plain ce.
Kermany's train split is 74% pneumonia: weighted_ce, focal, or the weighted sampler
(data.balance_classes) each counter it; combining the sampler with weighted_ce corrects twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from data_prep.errors import ConfigError
from data_prep.records import ImageRecord
from data_prep.tasks import TASK_CLASSES, class_counts
from detect.model_facts import LOSSES  # the names, torch-free, beside the config that checks them


def inverse_frequency_weights(counts: Sequence[int]) -> tuple[float, ...]:
    """N / (C * n_c) per class: 1 for every class when they are balanced. A class with no image
    is a ValueError (its weight would be infinite); the trainer turns it into a ConfigError."""
    if any(n <= 0 for n in counts):
        raise ValueError(f"every class needs at least one training image, got counts {list(counts)}")
    total, n_classes = sum(counts), len(counts)
    return tuple(total / (n_classes * n) for n in counts)


@dataclass(frozen=True)
class ClassificationLoss:
    """One of LOSSES over [B, K] logits and int64 [B] class indices (see the module docstring).

    `class_weights` (weighted_ce): one per class, for a binary task (negative, positive).
    """

    kind: str = "ce"
    class_weights: tuple[float, ...] = ()
    focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"loss '{self.kind}' is not one of {', '.join(LOSSES)}")
        if self.kind == "weighted_ce" and not self.class_weights:
            raise ValueError("weighted_ce needs class_weights")

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits = logits.float()
        binary = logits.ndim == 2 and logits.shape[1] == 1
        if self.kind == "focal":
            log_p_true = _log_prob_of_label(logits, labels, binary)
            return (-(1.0 - log_p_true.exp()).pow(self.focal_gamma) * log_p_true).mean()
        if self.kind == "ce":
            if binary:
                return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
            return F.cross_entropy(logits, labels)
        weights = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        n_classes = 2 if binary else logits.shape[1]
        if weights.numel() != n_classes:
            raise ValueError(f"weighted_ce has {weights.numel()} class weights for {n_classes} classes")
        if binary:
            per_image = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float(), reduction="none")
            w = weights[labels]
            return (w * per_image).sum() / w.sum()
        return F.cross_entropy(logits, labels, weight=weights)


def _log_prob_of_label(logits: Tensor, labels: Tensor, binary: bool) -> Tensor:
    """log p(true class) per image, computed stably (logsigmoid / log_softmax)."""
    if binary:
        z = logits[:, 0]
        return torch.where(labels == 1, F.logsigmoid(z), F.logsigmoid(-z))
    return logits.log_softmax(dim=1).gather(1, labels.view(-1, 1))[:, 0]


def build_classification_loss(
    kind: str, focal_gamma: float, task: str, train_records: Sequence[ImageRecord]
) -> ClassificationLoss:
    """The ClassificationLoss train.loss names; weighted_ce weighs by the inverse class frequency
    of `train_records` (the TRAIN split), a ConfigError naming the class when one has no image."""
    weights: tuple[float, ...] = ()
    if kind == "weighted_ce":
        counts = class_counts(train_records, task)
        empty = [name for name, n in zip(TASK_CLASSES[task], counts) if n == 0]
        if empty:
            raise ConfigError(
                f"config key 'train.loss' is weighted_ce, but the train split has no '{empty[0]}' image "
                f"for task {task} (class counts {counts}); use ce or focal, or add such images"
            )
        weights = inverse_frequency_weights(counts)
    return ClassificationLoss(kind, class_weights=weights, focal_gamma=focal_gamma)
