"""MLflow tracking against a real local file store, read back with MlflowClient: params, metric
history, artifacts, `--resume` continuing the same run, eval reports, nested compare/sweep runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The `mlflow` extra: CI installs it, so there a missing mlflow fails instead of skipping.
mlflow = __import__("mlflow") if os.environ.get("CI") == "true" else pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from data_prep.errors import ConfigError  # noqa: E402
from detect.tracking import (  # noqa: E402
    RUN_ID_FILE,
    MlflowTracker,
    flat_params,
    parent_run,
    read_run_id,
)
from detect.training.trainer import run_training  # noqa: E402
from tests.detect.train_fixtures import make_rsna, tiny_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A file: tracking store under tmp_path, set the way users set it (MLFLOW_TRACKING_URI)."""
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to use a file store
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "byod-test")
    mlflow.set_tracking_uri(uri)
    yield MlflowClient(tracking_uri=uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("byod-test")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def test_a_tracked_run_reads_back_and_resume_continues_it(tmp_path, store):
    data = make_rsna(tmp_path / "rsna", n_images=16)
    cfg = tiny_config(
        "train.loggers=[tensorboard,mlflow]", "train.epochs=1", "train.log_every_steps=1", "train.monitor=val_f1"
    )
    run_dir = tmp_path / "run"
    run_training(cfg, [data], out_dir=run_dir, log=lambda _: None)

    (run,) = _runs(store)
    assert run.info.status == "FINISHED"
    assert read_run_id(run_dir) == run.info.run_id
    params = run.data.params
    assert params["train.lr"] == "0.01" and params["model.name"] == "mobilenet_v3_large_fpn"
    assert params["train.loggers"] == '["tensorboard", "mlflow"]'
    assert len(params) == len(flat_params(cfg))
    assert [m.step for m in store.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert [m.step for m in store.get_metric_history(run.info.run_id, "epoch/val_f1")] == [1]
    artifacts = {a.path for a in store.list_artifacts(run.info.run_id)}
    assert {"model", "config.yaml", "metrics.csv"} <= artifacts
    assert {a.path for a in store.list_artifacts(run.info.run_id, "model")} == {
        "model/best.pt",
        "model/operating_points.json",
    }
    points = json.loads(
        Path(store.download_artifacts(run.info.run_id, "model/operating_points.json", str(tmp_path))).read_text()
    )
    assert set(points) == {"rsna"} and 0.0 <= points["rsna"]["threshold"] <= 1.0
    assert run.data.tags["operating_point.rsna"].startswith(str(points["rsna"]["threshold"]))

    import torch

    assert (
        torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["extra"]["mlflow_run_id"] == run.info.run_id
    )
    (run_dir / RUN_ID_FILE).unlink()  # the checkpoint alone is enough to find the run again
    longer = tiny_config(
        "train.loggers=[tensorboard,mlflow]", "train.epochs=2", "train.log_every_steps=1", "train.monitor=val_f1"
    )
    run_training(longer, [], out_dir=run_dir, resume=True, log=lambda _: None)
    (again,) = _runs(store)  # still one run, continued
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert [m.step for m in store.get_metric_history(run.info.run_id, "epoch/val_f1")] == [1, 2]
    assert again.data.tags["detect.resumed"] == "true"

    from detect.evaluation.evaluate import evaluate_checkpoint

    outcome = evaluate_checkpoint(
        run_dir / "checkpoints" / "best.pt", [data], tmp_path / "eval", split="test", device="cpu", workers=1
    )
    assert f"added the report to MLflow run {run.info.run_id} (eval/test/)" in outcome.notes
    assert "eval/test/report.md" in {a.path for a in store.list_artifacts(run.info.run_id, "eval/test")}


def test_compare_and_sweep_runs_are_nested_under_one_parent(tmp_path, store):
    cfg = tiny_config("train.loggers=[mlflow]")
    with parent_run(tmp_path / "compare", cfg, "compare") as parent:
        for name in ("a", "b"):
            tracker = MlflowTracker.open(tmp_path / "compare" / "runs" / name, cfg, resumed=False)
            tracker.add_scalar("train/loss", 1.0, 1)
            tracker.close()
        assert mlflow.active_run().info.run_id == parent.info.run_id
    runs = {r.info.run_name: r for r in _runs(store)}
    assert set(runs) == {"compare compare", "a", "b"}
    assert runs["a"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert runs["b"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert runs["compare compare"].info.status == "FINISHED"


def test_no_tracker_without_mlflow_in_loggers(tmp_path, store):
    assert MlflowTracker.open(tmp_path, tiny_config(), resumed=False) is None
    with parent_run(tmp_path, tiny_config("train.loggers=[]"), "sweep") as parent:
        assert parent is None
    assert _runs(store) == []


def test_an_unknown_logger_is_a_config_error():
    with pytest.raises(ConfigError, match="config key 'train.loggers' is 'wandb'; choose one of: tensorboard, mlflow"):
        tiny_config("train.loggers=[wandb]")
