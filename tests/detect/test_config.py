"""detect.config: strict YAML, every value checked when the config is built, before any data is read."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pydicom
import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from data_prep.errors import ConfigError, WeightsUnavailableError
from detect.config import Config, ModelConfig, config_from_dict, load_config
from detect.config_format import format_config
from detect.training import data_setup
from detect.training import trainer as train_module
from tests.detect.train_fixtures import make_rsna

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
DEMO = REPO_ROOT / "configs" / "demo.yaml"

# (override on top of configs/demo.yaml, what the one-line error must say)
BAD_VALUES: list[tuple[str, str]] = [
    (
        "model.anchor_sizes_px=[16, 32, 64]",
        r"'model\.anchor_sizes_px' has 3 sizes, but model 'resnet18_fpn' has 4 feature levels",
    ),
    (
        "model.anchor_sizes_px=[16, 32, -64, 128]",
        r"'model\.anchor_sizes_px' is \[16, 32, -64, 128\]; sizes must be > 0",
    ),
    ("model.anchor_aspect_ratios=[0.0, 1.0]", r"'model\.anchor_aspect_ratios' .*ratios must be > 0"),
    ("model.name=yolo", r"'model\.name' is 'yolo', which is not a known model; available models: resnet50_fpn_v2, "),
    ("model.trainable_backbone_layers=6", r"'model\.trainable_backbone_layers' is 6; 'resnet18_fpn' accepts 0 to 5"),
    ("model.box_score_thresh=1.5", r"'model\.box_score_thresh' is 1\.5; expected a value in \[0, 1\]"),
    ("model.box_nms_thresh=0", r"'model\.box_nms_thresh' is 0\.0; expected a value in \(0, 1\]"),
    ("model.box_detections_per_img=0", r"'model\.box_detections_per_img' is 0; expected at least 1"),
    ("model.rpn_batch_size_per_image=0", r"'model\.rpn_batch_size_per_image' is 0; expected at least 1"),
    ("model.head_dropout=1.0", r"'model\.head_dropout' is 1\.0; expected a value in \[0, 1\)"),
    ("model.classifier_loss_weight=-1", r"'model\.classifier_loss_weight' is -1\.0; expected at least 0"),
    ("model.roi_align_backend=cuda", r"'model\.roi_align_backend' is 'cuda'; choose one of: torchvision, grid_sample"),
    (
        "model.roi_sampling_ratio=0",
        r"'model\.roi_sampling_ratio' is 0; model\.roi_align_backend=grid_sample needs a fixed ratio >= 1",
    ),
    ("model.weights=", r"'model\.weights' is empty"),
    ("data.image_size_px=100", r"'data\.image_size_px' must be a multiple of 32, got 100"),
    ("data.image_size_px=0", r"'data\.image_size_px' must be > 0, got 0"),
    ("data.num_workers=-1", r"'data\.num_workers' is -1; expected at least 0"),
    ("data.kermany_weight=-0.5", r"'data\.kermany_weight' is -0\.5; expected at least 0"),
    ("data.val_fraction=1.0", r"'data\.val_fraction' is 1\.0; expected a value in \[0, 1\)"),
    ("data.val_fraction=0.9", r"'data\.val_fraction' \+ 'data\.test_fraction' must be < 1"),
    ("data.split_seed=-3", r"'data\.split_seed' is -3; expected at least 0"),
    ("data.augment.hflip_prob=2", r"'data\.augment\.hflip_prob' is 2\.0; expected a value in \[0, 1\]"),
    (
        "data.augment.scale_min=1.2",
        r"'data\.augment\.scale_min' must be <= 'data\.augment\.scale_max' \(1\.2 > 1\.05\)",
    ),
    ("data.augment.clahe_clip_limit=0", r"'data\.augment\.clahe_clip_limit' must be > 0, got 0\.0"),
    ("train.epochs=0", r"'train\.epochs' must be > 0, got 0"),
    ("train.batch_size=0", r"'train\.batch_size' must be > 0, got 0"),
    ("train.lr=0", r"'train\.lr' must be > 0, got 0\.0"),
    ("train.lr=.nan", r"'train\.lr' must be > 0, got nan"),
    ("train.optimizer=adam", r"'train\.optimizer' is 'adam'; choose one of: sgd, adamw"),
    ("train.schedule=linear", r"'train\.schedule' is 'linear'; choose one of: cosine, step, plateau, constant"),
    ("train.momentum=1.0", r"'train\.momentum' is 1\.0; expected a value in \[0, 1\)"),
    ("train.gamma=0", r"'train\.gamma' is 0\.0; expected a value in \(0, 1\]"),
    ("train.warmup_steps=-1", r"'train\.warmup_steps' is -1; expected at least 0"),
    ("train.step_epochs=[0, 3]", r"'train\.step_epochs' is \[0, 3\]; epochs count from 1"),
    (
        "train.monitor=val_acc",
        r"'train\.monitor' is 'val_acc'; choose one of: val_map50, val_rsna_score, val_f1, val_loss",
    ),
    ("train.eval_every_epochs=0", r"'train\.eval_every_epochs' is 0; expected at least 1"),
    ("train.grad_clip_norm=-1", r"'train\.grad_clip_norm' is -1\.0; expected at least 0"),
    ("train.device=tpu", r"'train\.device' is 'tpu'; use auto, cpu, cuda or cuda:N"),
    ("name=a/b", r"'name' is 'a/b'; it names the run folder"),
    ("seed=-1", r"'seed' is -1; expected at least 0"),
    (
        "train.lrr=0.1",
        r"unknown config key 'train\.lrr' \(did you mean 'train\.lr'\?\); valid keys in train: amp, batch_size",
    ),
    ("train.batch_size=four", r"'train\.batch_size' must be an integer, got 'four'"),
    ("task=kermany2", r"'task' is 'kermany2', but model 'resnet18_fpn' is a detector; choose a classifier"),
    ("task=chexpert", r"'task' is 'chexpert'; choose one of: detection, kermany2, kermany3, rsna2, rsna3"),
    (
        "train.monitor=val_macro_f1",
        r"'train\.monitor' is 'val_macro_f1', a metric of the three-class classification tasks",
    ),
    ("train.loss=focal", r"'train\.loss' is 'focal', but the detector's losses are fixed"),
    ("train.loss=bce", r"'train\.loss' is 'bce'; choose one of: ce, weighted_ce, focal"),
    ("train.focal_gamma=-1", r"'train\.focal_gamma' is -1\.0; expected at least 0"),
    ("train.freeze_backbone_epochs=2", r"'train\.freeze_backbone_epochs' applies to classifiers"),
    ("train.freeze_backbone_epochs=9", r"'train\.freeze_backbone_epochs' is 9, more than train\.epochs \(6\)"),
    ("train.finetune_lr_factor=0", r"'train\.finetune_lr_factor' is 0\.0; expected a value in \(0, 1\]"),
    (
        "model.weights=xrv:densenet121-res224-all",
        r"'model\.weights' is 'xrv:densenet121-res224-all'; torchxrayvision weights fit classifiers only",
    ),
]

# (overrides on top of configs/demo.yaml turning it into a classifier run, what the error must say)
CLASSIFIER = (
    "model.name=resnet18",
    "model.anchor_sizes_px=[]",
    "model.anchor_aspect_ratios=[]",
    "train.monitor=val_f1",
)
BAD_CLASSIFIER_VALUES: list[tuple[tuple[str, ...], str]] = [
    (("task=detection",), r"'task' is 'detection', but model 'resnet18' is a classifier; choose one of: kermany2"),
    (("task=kermany2", "train.monitor=val_map50"), r"'train\.monitor' is 'val_map50', but a classifier draws no boxes"),
    (
        ("task=rsna2", "train.monitor=val_macro_f1"),
        r"'train\.monitor' is 'val_macro_f1', a three-class metric; task rsna2 is binary",
    ),
    (
        ("task=kermany2", "model.name=inception_v3", "data.image_size_px=64"),
        r"'data\.image_size_px' is 64; 'inception_v3' needs at least 75 px",
    ),
    (
        ("task=kermany2", "model.anchor_sizes_px=[16, 32, 64, 128]"),
        r"'model\.anchor_sizes_px' is \[16, 32, 64, 128\], but 'resnet18' is a classifier",
    ),
]


@pytest.fixture(scope="module")
def raw_rsna(tmp_path_factory):
    """Synthetic RSNA as unzipped from Kaggle: no manifest yet, so training would read every header."""
    return make_rsna(tmp_path_factory.mktemp("rsna"), n_images=8, prepare=False)


@pytest.fixture
def no_data_reads(monkeypatch):
    """Any attempt to prepare a dataset or open a DICOM fails the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("data was read before the config was checked")

    monkeypatch.setattr(data_setup, "prepare_data", refuse)
    monkeypatch.setattr(pydicom, "dcmread", refuse)


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_every_bad_value_fails_before_any_data_is_read(override, message, raw_rsna, tmp_path, no_data_reads):
    with pytest.raises(ConfigError, match=message) as info:
        train_module.run_training(DEMO, [raw_rsna], out_dir=tmp_path / "run", overrides=[override], log=lambda _: None)
    assert str(info.value).startswith((f"--set {override}: ", f"{DEMO}: config key "))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing written either


@pytest.mark.parametrize(
    "overrides, message", BAD_CLASSIFIER_VALUES, ids=[" ".join(o) for o, _ in BAD_CLASSIFIER_VALUES]
)
def test_bad_classifier_values_fail_before_any_data_is_read(overrides, message, raw_rsna, tmp_path, no_data_reads):
    with pytest.raises(ConfigError, match=message) as info:
        train_module.run_training(
            DEMO, [raw_rsna], out_dir=tmp_path / "run", overrides=[*CLASSIFIER, *overrides], log=lambda _: None
        )
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


def test_a_classifier_takes_any_image_size_above_its_minimum():
    # not a multiple of 32: that is the detector's FPN stride, not a classifier's limit
    cfg = config_from_dict(
        {},
        [
            "model.name=basic_cnn",
            "task=kermany3",
            "data.image_size_px=100",
            "train.monitor=val_macro_f1",
            "train.loss=weighted_ce",
            "train.freeze_backbone_epochs=2",
            "model.weights=none",
        ],
    )
    assert cfg.data.image_size_px == 100 and cfg.task == "kermany3" and cfg.train.loss == "weighted_ce"
    assert (
        config_from_dict(
            {}, ["model.name=inception_v3", "task=rsna2", "data.image_size_px=75", "train.monitor=val_roc_auc"]
        ).data.image_size_px
        == 75
    )


def test_a_missing_weights_file_fails_before_any_data_is_read(raw_rsna, tmp_path, no_data_reads):
    with pytest.raises(WeightsUnavailableError, match=r"model\.weights=/no/such/weights\.pt: file not found"):
        train_module.run_training(
            DEMO,
            [raw_rsna],
            out_dir=tmp_path / "run",
            overrides=["model.weights=/no/such/weights.pt"],
            log=lambda _: None,
        )


def test_the_cli_prints_a_bad_value_as_one_line_with_exit_2(raw_rsna, tmp_path, no_data_reads):
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(DEMO),
            "--data",
            str(raw_rsna),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "model.anchor_sizes_px=[8]",
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --set model.anchor_sizes_px=[8]: config key 'model.anchor_sizes_px' has 1 sizes, "
        "but model 'resnet18_fpn' "
        "has 4 feature levels: give one size per level, small to large"
    )


def test_a_dataclass_built_in_code_is_checked_too():
    with pytest.raises(ConfigError, match=r"'model\.box_nms_thresh' is 2\.0"):
        ModelConfig(box_nms_thresh=2.0)
    with pytest.raises(ConfigError, match=r"'train\.lr' must be > 0"):
        dataclasses.replace(Config().train, lr=-1.0)


# ------------------------------------------------------------------------------- the file


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n", r"line 4: key 'lr' is given twice \(first on line 3\)"),
        ("name: a\nname: b\n", r"line 2: key 'name' is given twice \(first on line 1\)"),
        ("", r"the recipe is empty; give at least its name"),
        ("# only a comment\n", r"the recipe is empty"),
        ("- a\n- b\n", r"top level must be a mapping of config sections"),
        ("name: [unclosed\n", r"not valid YAML"),
    ],
)
def test_malformed_recipe_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)


def test_a_recipe_that_is_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"recipe\.yaml: not a UTF-8 text file \(byte 9 is 0xe9\)"):
        load_config(path)


def test_a_missing_recipe_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------- the recipes


def _leaf_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every `key: value` line that sets a value (not a section header)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0].rstrip()
        if re.match(r"^\s*[a-z_]+:\s*\S", stripped):
            out.append((number, line))
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_recipes_hold_only_changed_keys_each_with_its_reason(path):
    values = yaml.safe_load(path.read_text())
    default = config_from_dict({})
    cfg = load_config(path)
    for section, keys in values.items():
        if not isinstance(keys, dict):
            continue
        for key, value in keys.items():
            if isinstance(value, dict):
                for sub in value:
                    assert getattr(getattr(getattr(cfg, section), key), sub) != getattr(
                        getattr(getattr(default, section), key), sub
                    ), f"{path.name}: {section}.{key}.{sub} restates the default"
                continue
            assert getattr(getattr(cfg, section), key) != getattr(getattr(default, section), key), (
                f"{path.name}: {section}.{key} restates the default {value!r}"
            )
    lines = path.read_text().splitlines()
    for number, line in _leaf_lines(path.read_text()):
        if line.startswith("name:"):
            continue
        assert _has_a_reason(lines, number), (
            f"{path.name}:{number}: '{line.strip()}' has no reason (a comment in its group)"
        )


def _has_a_reason(lines: list[str], number: int) -> bool:
    """A key's reason is a comment on its line or on a line above it in its group (the run of
    non-blank lines it sits in): one comment may explain several keys set together."""
    for i in range(number - 1, -1, -1):
        if not lines[i].strip():
            return False
        if "#" in lines[i]:
            return True
    return False


def test_print_config_shows_the_resolved_config_and_trains_nothing(tmp_path):
    result = CliRunner().invoke(
        app,
        ["train", "--config", str(DEMO), "--set", "train.lr=0.05", "--print-config", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "  lr: 0.05  # default: 0.02" in text
    assert "  name: resnet18_fpn  # default: resnet50_fpn_v2" in text
    assert "  batch_size: 8\n" in text  # a default, unmarked
    assert not (tmp_path / "run").exists()
    # what it prints is the config itself: it reads back to the same Config
    assert config_from_dict(yaml.safe_load(text)) == load_config(DEMO, ["train.lr=0.05"])
    assert format_config(load_config(DEMO, ["train.lr=0.05"])) == text


def test_max_image_megapixels_is_the_readers_pixel_limit():
    from detect.config import config_from_dict

    assert config_from_dict({}, []).data.max_image_pixels == 100_000_000
    assert config_from_dict({}, ["data.max_image_megapixels=2.5"]).data.max_image_pixels == 2_500_000
    with pytest.raises(ConfigError, match=r"data.max_image_megapixels.*must be > 0, got 0"):
        config_from_dict({}, ["data.max_image_megapixels=0"])


def test_a_shipped_recipe_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    from detect.recipe import resolve_recipe, shipped_recipes

    monkeypatch.chdir(tmp_path)
    assert "demo" in shipped_recipes() and "gpu_rsna" in shipped_recipes()
    for given in ("demo", "demo.yaml", "configs/demo.yaml"):
        assert load_config(given).name == "demo"
    assert resolve_recipe("configs/demo.yaml").read_bytes() == (REPO_ROOT / "configs" / "demo.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"^nope: config file not found \(a path, or a shipped recipe: .*demo"):
        resolve_recipe("nope")


def test_a_local_file_wins_over_a_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.yaml").write_text("name: mine\n")
    assert load_config("configs/demo.yaml").name == "mine"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "train.lrr=0.1",
            "--set train.lrr=0.1: unknown config key 'train.lrr' (did you mean 'train.lr'?); valid keys in train: ",
        ),
        (
            "train.image_size_px=64",
            "--set train.image_size_px=64: unknown config key 'train.image_size_px' "
            "(did you mean 'data.image_size_px'?)",
        ),
        ("qqqqqqqq=1", "--set qqqqqqqq=1: unknown config key 'qqqqqqqq'; valid keys: "),
        ("train.lr=-1", "--set train.lr=-1: config key 'train.lr' must be > 0"),
    ],
)
def test_a_bad_set_names_the_option_and_the_nearest_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    assert str(info.value).startswith(message), str(info.value)


def test_a_bad_recipe_key_names_the_file_and_the_nearest_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata:\n  image_sise_px: 64\n")
    with pytest.raises(
        ConfigError,
        match=r"r\.yaml: unknown config key 'data\.image_sise_px' \(did you mean "
        r"'data\.image_size_px'\?\); valid keys in data: ",
    ):
        load_config(recipe)
