import pytest

from data_prep.errors import ConfigError
from detect.config import load_config
from detect.demo import DEMO_SIZES, REPO_CONFIGS, DemoResult, _headline, format_demo_summary, run_demo


def test_unknown_demo_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo size 'huge'; choose one of: full, quick"):
        run_demo(tmp_path / "out", size="huge")


def test_missing_demo_recipe_names_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        run_demo(tmp_path / "out", config=missing)


@pytest.mark.parametrize("size", sorted(DEMO_SIZES))
def test_demo_recipe_loads_with_each_size_overrides(size):
    cfg = load_config(REPO_CONFIGS / "demo.yaml", list(DEMO_SIZES[size].overrides))
    assert cfg.model.weights == "none"  # the demo must run offline
    assert cfg.model.name == "resnet18_fpn"  # learns fastest from random initialisation
    assert cfg.model.roi_align_backend == "grid_sample" and len(cfg.model.anchor_sizes_px) == 4


def test_summary_reports_headline_metrics_and_missing_ones(tmp_path):
    metrics = {
        "detection": {"map50": 0.5123, "map": 0.2, "rsna_score": 0.15},
        "classification": {"pneumonia": {"f1": 0.8}},
    }
    assert _headline(metrics)["rsna_map50"] == 0.5123
    result = DemoResult(out_dir=tmp_path, stage_seconds={"train": 12.0}, metrics=metrics)
    text = format_demo_summary(result)
    assert "RSNA mAP@0.5 (COCO, pycocotools)            0.512" in text
    assert "Kermany pneumonia-vs-normal accuracy        n/a" in text
