"""Frozen config dataclasses filled from strict YAML, overridable with `--set key=value`.

A recipe is one YAML file (configs/*.yaml). Every key must be a field below: an unknown or
misspelled key is a ConfigError naming it and listing the valid keys of its section (as
nanoGPT's configurator does). Paths (dataset roots, run folder) are NOT config: they come from
the command line, so one recipe serves every machine.

    cfg = load_config("configs/demo.yaml", overrides=["train.lr=0.01", "model.name=resnet50_fpn"])
    save_config(cfg, run_dir / "config.yaml")   # resolved, next to every checkpoint
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.errors import ConfigError


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
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet50_fpn_v2"  # a key of detect.models.MODELS
    weights: str = "none"  # none | imagenet | PATH to a .pt/.pth state dict or a detect checkpoint
    trainable_backbone_layers: int = 5  # 0-5 (resnet) / 0-6 (mobilenet); all when training from scratch
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
    roi_sampling_ratio: int = 2  # RoIAlign sampling points per bin side
    roi_align_backend: str = "torchvision"  # torchvision | grid_sample (same numbers, ~3x faster backward on CPU)
    # RPN anchors. Empty = the model's torchvision default (sized for ~800 px images). One size
    # per feature level (small to large, in input pixels), and height/width ratios for all levels.
    anchor_sizes_px: tuple[int, ...] = ()
    anchor_aspect_ratios: tuple[float, ...] = ()
    head_hidden_dim: int = 256  # image-level classification head
    head_dropout: float = 0.2
    classifier_loss_weight: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 8
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step | plateau | constant
    warmup_steps: int = 500  # linear warm-up (cosine and step schedules), in optimizer steps
    step_epochs: tuple[int, ...] = (8, 11)  # step schedule: epochs at which lr *= gamma
    gamma: float = 0.1
    plateau_patience: int = 2  # plateau schedule: epochs without improvement before lr *= gamma
    grad_clip_norm: float = 10.0  # 0 = no clipping
    amp: bool = True  # mixed precision, CUDA only (ignored on CPU)
    early_stop_patience: int = 0  # epochs without improvement of `monitor` before stopping; 0 = off
    monitor: str = "val_map50"  # val_map50 | val_rsna_score | val_f1 | val_loss
    max_steps_per_epoch: int = 0  # 0 = the whole epoch; >0 caps it (demo, smoke tests)
    eval_every_epochs: int = 1
    log_every_steps: int = 20
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass(frozen=True)
class Config:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check and convert one YAML value to the field's type, or raise ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {type(value).__name__}")
        return _build(annotation, value, prefix=f"{key}.")
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return tuple(_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    raise ConfigError(f"config key '{key}' has an unsupported type {annotation!r}")  # pragma: no cover


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    types_by_name = _field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        valid = ", ".join(sorted(types_by_name))
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {valid}"
        )
    kwargs = {name: _coerce(v, types_by_name[name], f"{prefix}{name}") for name, v in values.items()}
    return cls(**kwargs)


def _validate(cfg: Config) -> None:
    choices = {
        "train.optimizer": (cfg.train.optimizer, ("sgd", "adamw")),
        "train.schedule": (cfg.train.schedule, ("cosine", "step", "plateau", "constant")),
        "train.monitor": (cfg.train.monitor, ("val_map50", "val_rsna_score", "val_f1", "val_loss")),
        "model.roi_align_backend": (cfg.model.roi_align_backend, ("torchvision", "grid_sample")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is '{value}'; choose one of: {', '.join(allowed)}")
    positive = {
        "data.image_size_px": cfg.data.image_size_px,
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "train.lr": cfg.train.lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {value}")
    if cfg.data.image_size_px % 32:
        raise ConfigError(f"config key 'data.image_size_px' must be a multiple of 32, got {cfg.data.image_size_px}")
    if not 0 <= cfg.data.val_fraction < 1 or not 0 <= cfg.data.test_fraction < 1:
        raise ConfigError("config keys 'data.val_fraction' and 'data.test_fraction' must lie in [0, 1)")
    if cfg.data.augment.scale_min > cfg.data.augment.scale_max:
        raise ConfigError("config key 'data.augment.scale_min' must be <= 'data.augment.scale_max'")


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), suitable for YAML/JSON and checkpoints."""
    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [convert(x) for x in v]
        return v
    return convert(cfg)


def config_from_dict(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a validated Config from a (possibly partial) nested dict plus `key=value` overrides."""
    merged = _deep_copy(values or {})
    for text in overrides:
        path, value = _parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    cfg = _build(Config, merged)
    _validate(cfg)
    return cfg


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a recipe YAML (strict keys) and apply `--set` overrides. `path=None`: defaults only."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
            raise ConfigError(f"{p}: not valid YAML ({first})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of config sections")
        values = loaded
    try:
        return config_from_dict(values, overrides)
    except ConfigError as exc:
        if path is not None and not str(exc).startswith(str(path)):
            raise ConfigError(f"{path}: {exc}") from None
        raise


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config (every key, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
