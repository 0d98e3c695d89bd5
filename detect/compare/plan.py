"""What `detect compare` will train: one config and one run folder per model, everything else equal.

    plans = plan_compare(["resnet18_fpn", "mobilenet_v3_large_fpn"], "configs/demo.yaml", "compare",
                         epochs=3, minutes_per_model=None)

Every model gets the recipe's data, seed, split and training settings; only `model.name`
changes, plus what the model's kind requires (a classifier needs a classification `task` and
has no anchors). A row may also name its starting weights, `NAME:WEIGHTS` (model.weights:
none, imagenet, xrv:NAME or a file), so one architecture can be compared with itself:
`efficientnet_lite0:imagenet,efficientnet_lite0:none` is transfer learning against training
from scratch, on the same data, splits, seed and budget. A row without `:` keeps the recipe's
model.weights.
The budget is `--epochs` (train.epochs) or `--minutes-per-model` (train.max_minutes, with
train.epochs as the upper bound): every model stops at the end of the epoch in which its time
ran out. The run folders are OUT/runs/<row> (a row's ':' written as '-').
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data_prep.errors import ConfigError
from data_prep.manifest import find_prepared, read_manifest
from data_prep.prepare import detect_dataset_kind
from detect.config import Config, config_from_dict, config_to_dict, load_config
from detect.models.classifiers import DETECTION_TASK
from detect.models.registry import MODELS, get_model_spec, is_classifier

RUNS_FOLDER = "runs"
RESULT_FILE = "compare_result.json"  # the finished marker, written after the test evaluation


@dataclass(frozen=True)
class ModelPlan:
    """One row of a comparison: its label ('resnet18_fpn', 'efficientnet_lite0:imagenet'), its
    resolved config (model.name and model.weights from the label) and its run folder."""

    model: str
    config: Config
    run_dir: Path

    @property
    def model_name(self) -> str:
        """The registry name of the row's model."""
        return self.config.model.name

    @property
    def result_path(self) -> Path:
        return self.run_dir / RESULT_FILE


def parse_model_list(text: str) -> list[str]:
    """'a,b:imagenet,b:none' -> ['a', 'b:imagenet', 'b:none'] (order kept, repeats dropped); a
    ConfigError names an unknown model or an empty weights choice."""
    rows = [part.strip() for part in text.split(",") if part.strip()]
    if not rows:
        raise ConfigError(f"--models '{text}' names no model; available models: {', '.join(MODELS)}")
    for row in rows:
        name, weights = split_row(row)
        if name not in MODELS:
            raise ConfigError(f"--models: '{name}' is not a known model; available models: {', '.join(MODELS)}")
        if weights is not None and not weights:
            raise ConfigError(
                f"--models: '{row}' has an empty weights choice after ':'; use NAME:none, NAME:imagenet, "
                "NAME:xrv:WEIGHTS or NAME:PATH"
            )
    return list(dict.fromkeys(rows))


def split_row(row: str) -> tuple[str, str | None]:
    """'efficientnet_lite0:imagenet' -> ('efficientnet_lite0', 'imagenet'); 'resnet18' -> ('resnet18', None).
    Only the first ':' splits, so 'densenet121:xrv:densenet121-res224-all' keeps its weights whole."""
    name, sep, weights = row.partition(":")
    return name.strip(), (weights.strip() if sep else None)


def row_folder(row: str) -> str:
    """The run folder name of a row: letters, digits, '.', '_' and '-' only."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in row)


def model_kind(name: str) -> str:
    """'detector' or 'classifier' (the registry's `kind`) of a registry name or a row."""
    return get_model_spec(split_row(name)[0]).kind


def dataset_kinds(data_dirs: Sequence[str | Path]) -> list[str]:
    """'rsna' / 'kermany' of each --data folder: from its manifest when prepared, else its layout."""
    kinds = []
    for data_dir in data_dirs:
        kinds.append(
            read_manifest(data_dir).dataset if find_prepared(data_dir) is not None else detect_dataset_kind(data_dir)
        )
    return list(dict.fromkeys(kinds))


def kind_overrides(name: str, base: Config, data_dirs: Sequence[str | Path]) -> list[str]:
    """What a model's kind needs changed in the shared recipe. The `task`: detectors 'detection';
    classifiers the recipe's classification task, or, when the recipe says 'detection', the
    binary task of the data (kermany2 on Kermany, rsna2 on RSNA; with both, the recipe must name
    one). Classifiers also drop the recipe's anchors, which only a detector has."""
    if not is_classifier(name):
        return [f"task={DETECTION_TASK}"]
    no_anchors = ["model.anchor_sizes_px=[]", "model.anchor_aspect_ratios=[]"]
    if base.task != DETECTION_TASK:
        return [f"task={base.task}", *no_anchors]
    kinds = dataset_kinds(data_dirs)
    if len(kinds) != 1:
        raise ConfigError(
            f"--models {name} is a classifier and the recipe's task is detection: set task "
            "(kermany2, kermany3, rsna2 or rsna3) in the recipe or with --set task=..."
        )
    return [f"task={'rsna' if kinds[0] == 'custom' else kinds[0]}2", *no_anchors]  # own images: RSNA's classes


def comparison_task(base: Config) -> str:
    """The recipe's task: which class structure the comparison reports ('detection' = binary only)."""
    return base.task


@dataclass(frozen=True)
class ComparePlan:
    models: list[ModelPlan]
    task: str  # the recipe's task: 'detection' (binary pneumonia only) or a classification task


def plan_compare(
    models: Sequence[str],
    config: Config | str | Path | None,
    out_dir: str | Path,
    *,
    data_dirs: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    epochs: int | None = None,
    minutes_per_model: float | None = None,
) -> ComparePlan:
    """One ModelPlan per model; every ConfigError (an unknown key, a bad budget) before any training."""
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {epochs}")
    if minutes_per_model is not None and not minutes_per_model > 0:
        raise ConfigError(f"--minutes-per-model must be > 0, got {minutes_per_model}")
    budget = ([f"train.epochs={epochs}"] if epochs is not None else []) + (
        [f"train.max_minutes={minutes_per_model}"] if minutes_per_model is not None else []
    )
    base = config if isinstance(config, Config) else load_config(config, [])
    base = config_from_dict(config_to_dict(base), [*overrides, *budget])
    runs = Path(out_dir) / RUNS_FOLDER
    plans = []
    for row in models:
        name, weights = split_row(row)
        chosen = [f"model.weights={weights}"] if weights is not None else []
        try:
            cfg = config_from_dict(
                config_to_dict(base),
                [f"model.name={name}", f"name={row_folder(row)}", *chosen, *kind_overrides(name, base, data_dirs)],
            )
        except ConfigError as exc:
            raise ConfigError(f"--models {row}: {exc}") from None
        plans.append(ModelPlan(row, cfg, runs / row_folder(row)))
    folders = [plan.run_dir.name for plan in plans]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"--models: two rows share the run folder name of {sorted(folders)}; name them apart")
    return ComparePlan(plans, comparison_task(base))
