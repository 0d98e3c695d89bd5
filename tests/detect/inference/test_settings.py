"""InferenceSettings: one record, checked at construction, that reaches the CLI, the API and serve."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer

from cli import app
from data_prep.errors import ConfigError, DetectError
from detect.inference.settings import InferenceSettings, cli_flags, field_names, request_fields
from detect.serve.app import create_app

# What `POST /v1/predict` takes besides the settings' request fields: how the answer looks.
SERVE_RESPONSE_FIELDS = {"explain", "render"}
# `detect infer` flags that are not prediction settings: where the job reads and writes, and how it runs.
INFER_JOB_FLAGS = {
    "--out",
    "--checkpoint",
    "--gate-with",
    "--resume",
    "--glob",
    "--allow-failures",
    "--log-every",
    "--dicomweb",
    "--study",
    "--stow",
    "--dicomweb-follow-redirects",
    "--workers",  # the hidden old name of --threads
}


def _infer_flags() -> set[str]:
    command = typer.main.get_command(app).commands["infer"]  # type: ignore[attr-defined]
    return {name for param in command.params for name in param.opts if name.startswith("--")}


def _serve_query_fields() -> set[str]:
    spec = create_app(None).openapi()
    operation = spec["paths"]["/v1/predict"]["post"]
    return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}


def test_every_setting_has_its_detect_infer_flag_and_every_flag_a_setting():
    flags = cli_flags()
    infer = _infer_flags()
    missing = {name: flag for name, flag in flags.items() if flag not in infer}
    assert not missing, f"settings without their detect infer flag: {missing}"
    unaccounted = infer - set(flags.values()) - INFER_JOB_FLAGS - {"--help"}
    unaccounted -= {f"--no-{flag[2:]}" for flag in flags.values()}  # --tta/--no-tta and the like
    unaccounted -= {"--keep-below-threshold"}  # the off switch of --drop-below-threshold
    assert not unaccounted, f"detect infer flags that are not InferenceSettings fields: {sorted(unaccounted)}"


def test_serve_query_fields_are_exactly_the_request_settings():
    assert _serve_query_fields() == set(request_fields()) | SERVE_RESPONSE_FIELDS


def test_a_request_sets_each_request_field_by_name():
    defaults = InferenceSettings()
    values = {"tta": "true", "score_thresh": "0.7", "pneumonia_threshold": "0.2", "threshold_from": None}
    assert set(values) == set(request_fields())
    changed = defaults.for_request({k: v for k, v in values.items() if v is not None})
    assert (changed.tta, changed.score_thresh, changed.pneumonia_threshold) == (True, 0.7, 0.2)
    assert defaults.for_request({"threshold_from": "kermany"}).threshold_from == "kermany"
    assert defaults.for_request({"render": "true", "batch_size": "64"}) == defaults  # not request fields
    with pytest.raises(DetectError, match="tta: 'maybe' is not a boolean"):
        defaults.for_request({"tta": "maybe"})
    with pytest.raises(DetectError, match="score_thresh: 'nan' is not a finite number"):
        defaults.for_request({"score_thresh": "nan"})


def test_one_new_field_reaches_the_flag_check_serve_and_the_fingerprint():
    """A field added with its metadata is listed for the CLI check, offered to requests and
    fingerprinted without touching any other list."""

    @dataclasses.dataclass(frozen=True)
    class WithOneMore(InferenceSettings):
        max_boxes: int = dataclasses.field(
            default=10, metadata={"flag": "--max-boxes", "request": True, "decides": True}
        )

    more = WithOneMore()
    assert "max_boxes" in more.decision_fields()
    assert more.for_request({"max_boxes": "3"}).max_boxes == 3
    assert {f.metadata["flag"] for f in dataclasses.fields(WithOneMore)} - set(cli_flags().values()) == {"--max-boxes"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"score_thresh": 1.5}, "score threshold must lie in [0, 1]"),
        ({"shrink_factor": 0.0}, "shrink factor must lie in (0, 1]"),
        ({"tta_merge": "mean"}, "TTA merge method 'mean' is unknown"),
        ({"pneumonia_threshold": 0.5, "threshold_from": "rsna"}, "either --pneumonia-threshold or --threshold-from"),
        ({"threshold_from": "mimic"}, "--threshold-from 'mimic' is unknown"),
        ({"backend": "tensorrt"}, "--backend is 'tensorrt'"),
        ({"device": "gpu"}, "--device is 'gpu'"),
        ({"batch_size": 0}, "--batch-size must be a whole number in 1..4096"),
        ({"batch_size": True}, "--batch-size must be a whole number"),
        ({"workers": -1}, "--threads must be a whole number in 0..256"),
        ({"max_megapixels": float("inf")}, "--max-megapixels"),
        ({"anonymize": True, "submission_path": "s.csv"}, "--anonymize and --submission"),
    ],
)
def test_bad_settings_are_refused_at_construction(changes, message):
    with pytest.raises(DetectError) as caught:
        InferenceSettings(**changes)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_settings_are_frozen_and_paths_are_paths():
    settings = InferenceSettings(overlay_dir="out/overlays")
    assert settings.overlay_dir == Path("out/overlays")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tta = True  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown inference setting.*score_threshold"):
        settings.replace(score_threshold=0.2)
    assert settings.replace(tta=True).postprocess.tta and field_names()[0] == "score_thresh"
