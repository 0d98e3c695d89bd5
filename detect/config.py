"""Frozen config dataclasses filled from strict YAML, checked at load, overridable with `--set`.

A recipe is one YAML file (configs/*.yaml) that holds only the keys it changes from the
defaults below, each with its reason. Every key must be a field below: an unknown or misspelled
key is a ConfigError naming it and listing the valid keys of its section (as nanoGPT's
configurator does); so is a duplicated key, an empty file and a file that is not UTF-8 YAML.
Every value and range check lives here, in the sections' `__post_init__`, so a bad value fails
when the config is built: before any data is read or any model is built. Paths (dataset roots,
run folder) are NOT config: they come from the command line, so one recipe serves every machine.

    cfg = load_config("configs/demo.yaml", overrides=["train.lr=0.01", "model.name=resnet50_fpn"])
    save_config(cfg, run_dir / "config.yaml")   # resolved, next to every checkpoint
    print(format_config(cfg))                    # `detect train --print-config` (detect.config_format)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.atomic import write_text_atomic
from data_prep.errors import ConfigError
from data_prep.own_labels import UNANNOTATED_CHOICES, parse_label_map
from data_prep.tasks import CLASSIFICATION_TASKS, DETECTION_TASK, TASKS, num_outputs
from detect.config_checks import Checks as _Checks
from detect.config_checks import build_dataclass, deep_copy
from detect.model_facts import LOSSES, ModelFacts, get_model_facts, is_classifier
from detect.recipe import check_config_shape, read_recipe, shown, split_override

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "step", "plateau", "constant")
MONITORS: tuple[str, ...] = (
    "val_map50",
    "val_rsna_score",
    "val_f1",
    "val_loss",
    "val_roc_auc",
    "val_macro_f1",
    "val_accuracy",
)
BOX_MONITORS: tuple[str, ...] = ("val_map50", "val_rsna_score")  # detectors only: a classifier draws no boxes
XRV_WEIGHTS_PREFIX = "xrv:"  # model.weights=xrv:NAME, a torchxrayvision CXR-pretrained network
ROI_ALIGN_BACKENDS: tuple[str, ...] = ("torchvision", "grid_sample")
# Where a detector's image-level pneumonia probability comes from (detect.models.detector).
IMAGE_PROBABILITY_RULES: tuple[str, ...] = ("head", "top_box", "mean")
LOGGERS: tuple[str, ...] = ("tensorboard", "mlflow")  # detect.training.tracking
THRESHOLD_RULES: tuple[str, ...] = ("f1", "youden")  # detect.evaluation.scoring.choose_operating_point
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MAX_EPOCHS = 100_000
MAX_NAME_CHARS = 100  # a run folder's name (file systems allow 255 bytes)
IMAGE_SIZE_MULTIPLE_PX = 32  # the FPN's coarsest stride: smaller steps would pad every image


@dataclass(frozen=True)
class AugmentConfig:
    hflip_prob: float = 0.5  # RSNA opacities occur in both lungs: a left-right flip is label-preserving
    affine_prob: float = 0.5
    rotate_degrees: float = 5.0
    shear_degrees: float = 5.0
    scale_min: float = 0.9  # zoom range of the affine
    scale_max: float = 1.1
    translate_fraction: float = 0.05
    brightness: float = 0.2  # ColorJitter strength, 0 = off
    contrast: float = 0.2
    clahe: bool = False  # CLAHE on the grayscale image before everything else (OpenCV)
    clahe_clip_limit: float = 2.0

    def __post_init__(self) -> None:
        check = _Checks("data.augment")
        check.in_range("hflip_prob", self.hflip_prob, 0.0, 1.0)
        check.in_range("affine_prob", self.affine_prob, 0.0, 1.0)
        check.in_range("rotate_degrees", self.rotate_degrees, 0.0, 180.0)
        check.in_range("shear_degrees", self.shear_degrees, 0.0, 90.0, high_open=True)
        check.positive("scale_min", self.scale_min)
        check.positive("scale_max", self.scale_max)
        if self.scale_min > self.scale_max:
            check.fail("scale_min", f"must be <= 'data.augment.scale_max' ({self.scale_min} > {self.scale_max})")
        check.in_range("translate_fraction", self.translate_fraction, 0.0, 1.0, high_open=True)
        check.at_least("brightness", self.brightness, 0.0)
        check.at_least("contrast", self.contrast, 0.0)
        check.positive("clahe_clip_limit", self.clahe_clip_limit)


@dataclass(frozen=True)
class DataConfig:
    image_size_px: int = 512  # images are resized (aspect kept, padded) to this square size
    use_cache: bool = True  # use / build the preprocessing cache of resized images
    num_workers: int = 2
    balance_classes: bool = True  # WeightedRandomSampler over the training classes
    kermany_weight: float = 1.0  # relative sampling weight of Kermany images vs RSNA images
    val_fraction: float = 0.1  # patient-level fractions used when preparing on the fly
    test_fraction: float = 0.1
    split_seed: int = 0
    # Images whose header claims more pixels are refused before decoding (a broken or hostile
    # header can claim 60000 x 60000 in a small file); 100 is well above any radiograph.
    max_image_megapixels: float = 100.0
    # A folder of one's own images prepared on the fly (data_prep.own_labels): its label names ->
    # opacity | normal | abnormal ('consolidation=opacity,clear=normal', as --label-map), and
    # 'normal' to take a labelled image without annotation as normal ('' = left out, reported).
    label_map: str = ""
    unannotated: str = ""
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def max_image_pixels(self) -> int:
        """max_image_megapixels as the readers' max_pixels."""
        return max(1, round(self.max_image_megapixels * 1e6))

    def __post_init__(self) -> None:
        check = _Checks("data")
        check.positive("image_size_px", self.image_size_px)  # the model's own limits: Config.__post_init__
        check.at_least("num_workers", self.num_workers, 0)
        check.at_least("kermany_weight", self.kermany_weight, 0.0)
        check.in_range("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        check.in_range("test_fraction", self.test_fraction, 0.0, 1.0, high_open=True)
        if self.val_fraction + self.test_fraction >= 1.0:
            check.fail(
                "val_fraction",
                f"+ 'data.test_fraction' must be < 1 (no patient left to train on), "
                f"got {self.val_fraction} + {self.test_fraction}",
            )
        check.at_least("split_seed", self.split_seed, 0)
        check.positive("max_image_megapixels", self.max_image_megapixels)
        try:
            parse_label_map(self.label_map)
        except ConfigError as exc:
            check.fail("label_map", f"is '{self.label_map}': {str(exc).split(': ', 1)[-1]}")
        if self.unannotated not in ("", *UNANNOTATED_CHOICES):
            check.fail(
                "unannotated", f"is '{self.unannotated}'; use {' or '.join(UNANNOTATED_CHOICES)}, or leave it empty"
            )


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet50_fpn_v2"  # a key of detect.models.registry.MODELS (detectors and classifiers)
    # none | imagenet | PATH to a .pt/.pth state dict or a detect checkpoint | xrv:NAME (classifiers:
    # a torchxrayvision CXR-pretrained network, e.g. xrv:densenet121-res224-all)
    weights: str = "none"
    trainable_backbone_layers: int = 5  # detectors: 0-5 (resnet) / 0-6 (mobilenet); all when training from scratch
    box_score_thresh: float = 0.05  # boxes below this score are not returned at inference
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 10
    # RPN / RoI sampling. torchvision's defaults are the reference recipe; on a CPU the RoI head
    # dominates a step (roi_align backward and the 12544->1024 MLP), so the CPU recipes shrink it.
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512  # RoIs sampled per image for the box head loss
    box_head_dim: int = 1024  # representation size of the two-layer box head (r50 v2 keeps its conv head)
    roi_sampling_ratio: int = 2  # RoIAlign sampling points per bin side; <= 0: adaptive (torchvision only)
    roi_align_backend: str = "torchvision"  # torchvision | grid_sample (same numbers, ~3x faster backward on CPU)
    # RPN anchors. Empty = the model's torchvision default (sized for ~800 px images). One size
    # per feature level (small to large, in input pixels), and height/width ratios for all levels.
    anchor_sizes_px: tuple[int, ...] = ()
    anchor_aspect_ratios: tuple[float, ...] = ()
    head_hidden_dim: int = 256  # image-level classification head
    head_dropout: float = 0.2
    classifier_loss_weight: float = 1.0
    # Detectors: the image-level pneumonia probability is the image head's (head), the top box
    # score (top_box: a detector that finds the opacity knows the image is positive), or their
    # mean. The head's three RSNA-class and subtype probabilities are reported either way.
    image_probability: str = "head"

    def __post_init__(self) -> None:
        check = _Checks("model")
        spec = get_model_facts(self.name)
        if not self.weights.strip():
            check.fail("weights", "is empty; use none, imagenet or the path of a .pt/.pth file")
        if spec.kind == "classifier":
            self._check_classifier(check, spec)
            return
        if self.weights.strip().lower().startswith(XRV_WEIGHTS_PREFIX):
            check.fail(
                "weights",
                f"is {shown(self.weights)}; torchxrayvision weights fit classifiers only, "
                f"not the detector '{self.name}'",
            )
        if not 0 <= self.trainable_backbone_layers <= spec.trainable_layers_max:
            check.fail(
                "trainable_backbone_layers",
                f"is {self.trainable_backbone_layers}; '{self.name}' accepts 0 to {spec.trainable_layers_max}",
            )
        check.in_range("box_score_thresh", self.box_score_thresh, 0.0, 1.0)
        check.in_range("box_nms_thresh", self.box_nms_thresh, 0.0, 1.0, low_open=True)
        for key in (
            "box_detections_per_img",
            "rpn_pre_nms_top_n_train",
            "rpn_post_nms_top_n_train",
            "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_test",
            "rpn_batch_size_per_image",
            "box_batch_size_per_image",
            "box_head_dim",
            "head_hidden_dim",
        ):
            check.at_least(key, getattr(self, key), 1)
        check.choice("roi_align_backend", self.roi_align_backend, ROI_ALIGN_BACKENDS)
        if self.roi_align_backend == "grid_sample" and self.roi_sampling_ratio < 1:
            check.fail(
                "roi_sampling_ratio",
                f"is {self.roi_sampling_ratio}; model.roi_align_backend=grid_sample needs a fixed ratio >= 1",
            )
        if self.anchor_sizes_px:
            if len(self.anchor_sizes_px) != spec.feature_levels:
                check.fail(
                    "anchor_sizes_px",
                    f"has {len(self.anchor_sizes_px)} sizes, but model '{self.name}' has "
                    f"{spec.feature_levels} feature levels: give one size per level, small to large",
                )
            if any(size <= 0 for size in self.anchor_sizes_px):
                check.fail("anchor_sizes_px", f"is {list(self.anchor_sizes_px)}; sizes must be > 0")
        if any(not (math.isfinite(r) and r > 0) for r in self.anchor_aspect_ratios):
            check.fail("anchor_aspect_ratios", f"is {list(self.anchor_aspect_ratios)}; ratios must be > 0")
        check.in_range("head_dropout", self.head_dropout, 0.0, 1.0, high_open=True)
        check.at_least("classifier_loss_weight", self.classifier_loss_weight, 0.0)
        check.choice("image_probability", self.image_probability, IMAGE_PROBABILITY_RULES)

    def _check_classifier(self, check: _Checks, spec: ModelFacts) -> None:
        """A classifier has no anchors and no trainable-layer count (train.freeze_backbone_epochs
        is its transfer-learning knob); its weights must exist for it."""
        default = ModelConfig()
        if self.trainable_backbone_layers != default.trainable_backbone_layers:
            check.fail(
                "trainable_backbone_layers",
                f"is {self.trainable_backbone_layers}, but '{self.name}' is a "
                "classifier: use train.freeze_backbone_epochs to train its head first",
            )
        for key in ("anchor_sizes_px", "anchor_aspect_ratios"):
            if getattr(self, key):
                check.fail(
                    key,
                    f"is {list(getattr(self, key))}, but '{self.name}' is a classifier: anchors are for detectors only",
                )
        weights = self.weights.strip()
        if weights.lower() == "imagenet" and not spec.imagenet_weights:
            check.fail("weights", f"is imagenet, but '{self.name}' has no ImageNet weights; use none or a file")
        if weights.lower().startswith(XRV_WEIGHTS_PREFIX):
            if not spec.xrv_weights:
                check.fail(
                    "weights",
                    f"is {shown(weights)}; torchxrayvision has no weights for '{self.name}' "
                    "(densenet121 and resnet50 have)",
                )
            if not weights[len(XRV_WEIGHTS_PREFIX) :].strip():
                check.fail(
                    "weights", f"is {shown(weights)}; name the torchxrayvision weights, e.g. xrv:densenet121-res224-all"
                )


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.02
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step | plateau | constant
    warmup_steps: int = 500  # linear warm-up (cosine and step schedules), in optimizer steps
    step_epochs: tuple[int, ...] = (8, 11)  # step schedule: epochs at which lr *= gamma
    gamma: float = 0.1  # step and plateau schedules
    plateau_patience: int = 2  # plateau schedule: epochs without improvement before lr *= gamma
    grad_clip_norm: float = 10.0  # 0 = no clipping
    amp: bool = True  # mixed precision, CUDA only (ignored on CPU)
    early_stop_patience: int = 0  # epochs without improvement of `monitor` before stopping; 0 = off
    monitor: str = "val_map50"  # val_map50 | val_rsna_score (detectors) | val_f1 | val_roc_auc | val_loss | val_accuracy | val_macro_f1 (3-class tasks)
    max_steps_per_epoch: int = 0  # 0 = the whole epoch; >0 caps it (demo, smoke tests)
    # Time budget in minutes of training (epochs with their validation, summed over resumes);
    # 0 = none. Training stops at the end of the epoch in which it runs out (`detect compare
    # --minutes-per-model`): every model gets the same wall-clock budget, not the same epochs.
    max_minutes: float = 0.0
    eval_every_epochs: int = 1
    log_every_steps: int = 20  # 0 = no step lines
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # Classifiers (task other than detection): the loss against class imbalance, and the
    # two-phase transfer schedule (head alone on a frozen backbone, then all at a lower lr).
    loss: str = "ce"  # ce | weighted_ce (inverse class frequency of the train split) | focal
    focal_gamma: float = 2.0  # focal loss exponent; 0 is plain cross-entropy
    freeze_backbone_epochs: int = 0  # epochs training only the new head; 0 = off
    finetune_lr_factor: float = 0.1  # lr multiplier once the backbone unfreezes
    # How the decision threshold is chosen on val: f1 (F1-optimal) or youden (highest sensitivity
    # + specificity, which does not move with the prevalence: Kermany's val is 74 % pneumonia,
    # its test 62.5 %; docs/transfer-learning.md, "Choosing the operating point")
    threshold_rule: str = "f1"
    # Where the run is also recorded besides metrics.csv: tensorboard (RUN_DIR/tensorboard/, when
    # installed) and/or mlflow (the `mlflow` extra; MLFLOW_TRACKING_URI says where). [] = neither.
    loggers: tuple[str, ...] = ("tensorboard",)

    def __post_init__(self) -> None:
        check = _Checks("train")
        for logger in self.loggers:
            check.choice("loggers", logger, LOGGERS)
        check.positive("epochs", self.epochs)
        check.positive("batch_size", self.batch_size)
        # Upper bounds far above any real run: a typo (1e23 epochs) is an error, not a run that never ends.
        for key, high in (
            ("epochs", MAX_EPOCHS),
            ("batch_size", 65_536),
            ("warmup_steps", 10**9),
            ("plateau_patience", MAX_EPOCHS),
            ("early_stop_patience", MAX_EPOCHS),
            ("max_steps_per_epoch", 10**9),
            ("max_minutes", 10**7),
            ("eval_every_epochs", MAX_EPOCHS),
            ("log_every_steps", 10**9),
            ("freeze_backbone_epochs", MAX_EPOCHS),
        ):
            check.at_most(key, getattr(self, key), high)
        if any(epoch > MAX_EPOCHS for epoch in self.step_epochs):
            check.fail("step_epochs", f"has an epoch over {MAX_EPOCHS:,}")
        check.choice("optimizer", self.optimizer, OPTIMIZERS)
        check.positive("lr", self.lr)
        check.in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check.at_least("weight_decay", self.weight_decay, 0.0)
        check.choice("schedule", self.schedule, SCHEDULES)
        check.at_least("warmup_steps", self.warmup_steps, 0)
        if any(epoch < 1 for epoch in self.step_epochs):
            check.fail("step_epochs", f"is {list(self.step_epochs)}; epochs count from 1")
        check.in_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check.at_least("plateau_patience", self.plateau_patience, 0)
        check.at_least("grad_clip_norm", self.grad_clip_norm, 0.0)
        check.at_least("early_stop_patience", self.early_stop_patience, 0)
        check.choice("monitor", self.monitor, MONITORS)
        check.at_least("max_steps_per_epoch", self.max_steps_per_epoch, 0)
        check.at_least("max_minutes", self.max_minutes, 0.0)
        check.at_least("eval_every_epochs", self.eval_every_epochs, 1)
        check.at_least("log_every_steps", self.log_every_steps, 0)
        if not DEVICE_PATTERN.match(self.device.strip().lower()):
            check.fail("device", f"is {shown(self.device)}; use auto, cpu, cuda or cuda:N")
        check.choice("loss", self.loss, LOSSES)
        check.at_least("focal_gamma", self.focal_gamma, 0.0)
        check.at_least("freeze_backbone_epochs", self.freeze_backbone_epochs, 0)
        if self.freeze_backbone_epochs > self.epochs:
            check.fail(
                "freeze_backbone_epochs", f"is {self.freeze_backbone_epochs}, more than train.epochs ({self.epochs})"
            )
        check.in_range("finetune_lr_factor", self.finetune_lr_factor, 0.0, 1.0, low_open=True)
        check.choice("threshold_rule", self.threshold_rule, THRESHOLD_RULES)


@dataclass(frozen=True)
class Config:
    name: str = "run"  # the run folder's default name: runs/<name>
    seed: int = 0
    # detection (a detector with its image head, on RSNA and/or Kermany) | kermany2 (normal /
    # pneumonia) | kermany3 (normal / bacterial / viral) | rsna2 (pneumonia yes / no) | rsna3
    # (the three RSNA classes): the four classification tasks take a classifier model.name
    task: str = DETECTION_TASK
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check = _Checks("")
        if len(self.name) > MAX_NAME_CHARS:
            check.fail(
                "name",
                f"is {len(self.name):,} characters long; it names the run folder runs/<name>: at most {MAX_NAME_CHARS}",
            )
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0\n"):
            check.fail(
                "name", f"is {shown(self.name)}; it names the run folder runs/<name>: use letters, digits, - or _"
            )
        check.at_least("seed", self.seed, 0)
        check.at_most("seed", self.seed, 2**32 - 1)  # numpy's seed range
        check.choice("task", self.task, TASKS)
        if is_classifier(self.model.name):
            self._check_classifier()
        else:
            self._check_detector()

    def _check_detector(self) -> None:
        check = _Checks("")
        if self.task != DETECTION_TASK:
            check.fail(
                "task",
                f"is {shown(self.task)}, but model '{self.model.name}' is a detector; choose a classifier "
                "(basic_cnn, resnet18, ...) or task detection",
            )
        size = self.data.image_size_px
        if size % IMAGE_SIZE_MULTIPLE_PX:
            _Checks("data").fail("image_size_px", f"must be a multiple of {IMAGE_SIZE_MULTIPLE_PX}, got {size}")
        train = _Checks("train")
        if self.train.monitor == "val_macro_f1":
            train.fail(
                "monitor",
                "is 'val_macro_f1', a metric of the three-class classification tasks; "
                "a detector monitors val_map50, val_rsna_score, val_f1, val_roc_auc, val_accuracy or val_loss",
            )
        if self.train.loss != "ce":
            train.fail(
                "loss",
                f"is {shown(self.train.loss)}, but the detector's losses are fixed; train.loss applies to classifiers",
            )
        if self.train.freeze_backbone_epochs:
            train.fail(
                "freeze_backbone_epochs", "applies to classifiers; a detector uses model.trainable_backbone_layers"
            )

    def _check_classifier(self) -> None:
        check = _Checks("")
        spec = get_model_facts(self.model.name)
        if self.task not in CLASSIFICATION_TASKS:
            check.fail(
                "task",
                f"is {shown(self.task)}, but model '{self.model.name}' is a classifier; "
                f"choose one of: {', '.join(CLASSIFICATION_TASKS)}",
            )
        size = self.data.image_size_px
        if size < spec.min_image_size_px:
            _Checks("data").fail(
                "image_size_px", f"is {size}; '{self.model.name}' needs at least {spec.min_image_size_px} px"
            )
        train = _Checks("train")
        if self.train.monitor in BOX_MONITORS:
            train.fail(
                "monitor",
                f"is {shown(self.train.monitor)}, but a classifier draws no boxes; use val_f1, "
                "val_roc_auc, val_accuracy, val_loss" + (", val_macro_f1" if num_outputs(self.task) > 1 else ""),
            )
        if self.train.monitor == "val_macro_f1" and num_outputs(self.task) == 1:
            train.fail("monitor", f"is 'val_macro_f1', a three-class metric; task {self.task} is binary: use val_f1")


# ---------------------------------------------------------------------------------------------


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), suitable for YAML/JSON and checkpoints."""

    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        return v

    return convert(cfg)


def config_from_dict(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), flag: str = "") -> Config:
    """Build a validated Config from a (possibly partial) nested dict plus `key=value` overrides.
    A dict too deep or too large to be a config (detect.recipe.check_config_shape) is refused first:
    the same check guards recipes, --set values and the configs stored in checkpoints. With `flag`
    (e.g. "--set"), an error about an overridden key names the override it came from."""
    check_config_shape(values)
    merged = deep_copy(values or {})
    given: dict[str, str] = {}
    for text in overrides:
        path, value = split_override(text)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {shown(text)}: {shown(part)} is not a section")
            node = child
        node[path[-1]] = value
        given[".".join(path)] = text
    check_config_shape(merged)
    try:
        return build_dataclass(Config, merged, root=Config)
    except ConfigError as exc:
        named = re.search(r"config key '([^'\[]+)", str(exc))
        if flag and named and named.group(1) in given:
            raise ConfigError(f"{flag} {given[named.group(1)]}: {exc}") from None
        raise


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a recipe YAML (strict keys, checked values) and apply `--set` overrides.
    `path=None`: the defaults plus the overrides."""
    values = read_recipe(path) if path is not None else {}
    try:
        return config_from_dict(values, overrides, flag="--set")
    except ConfigError as exc:
        if path is not None and not str(exc).startswith((str(path), "--set ", "override '")):
            raise ConfigError(f"{path}: {exc}") from None
        raise


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
