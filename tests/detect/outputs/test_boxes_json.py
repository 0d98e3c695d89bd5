"""detect.outputs.boxes_json: the shipped schema is valid draft 2020-12, accepts what infer writes, rejects the rest."""

import copy
import errno
import json
import os

import jsonschema
import numpy as np
import pytest

from data_prep import atomic
from data_prep.errors import OutputWriteError
from data_prep.tasks import TASKS
from detect.outputs.boxes_json import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    prediction_to_json,
    settings_to_json,
    validate_output,
    write_boxes_json,
)
from detect.predictions import ImagePrediction, OperatingPoint, PostprocessSettings
from tests.data_prep.fs_fixtures import fill_disk, small_filesystem

RSNA_POINT = OperatingPoint("rsna", 0.42, "F1-optimal on rsna val at epoch 5 (72 images)")


def _ok_fields() -> dict:
    return dict(
        source="scan.dcm",
        patient_id="p1",
        sop_instance_uid="1.2.3",
        view_position="AP",
        study_instance_uid="1.2.1",
        series_instance_uid="1.2.2",
        pixel_spacing_mm=(0.139, 0.143),
        width_px=400,
        height_px=300,
        class_probabilities={"Normal": 0.1, "No Lung Opacity / Not Normal": 0.2, "Lung Opacity": 0.7},
        subtype_probabilities={"normal": 0.2, "bacterial": 0.5, "viral": 0.3},
        pneumonia_probability=0.7,
        pneumonia=True,
        operating_point=RSNA_POINT,
        box_outcome="boxes",
        boxes_xyxy=np.array([[10, 20, 110, 220]], dtype=np.float32),
        scores=np.array([0.63], dtype=np.float32),
    )


def _document():
    ok = ImagePrediction(**_ok_fields())
    bad = ImagePrediction(source="junk.dcm", error="not a DICOM file")
    return {
        "schema_version": SCHEMA_VERSION,
        "anonymized": False,
        "model": {
            "name": "mobilenet_v3_large_fpn",
            "task": "detection",
            "checkpoint": "runs/a/checkpoints/best.pt",
            "checkpoint_epoch": 3,
            "image_size_px": 128,
            "config_name": "demo",
            "detect_version": "0.1.0",
        },
        "gate_model": None,
        "settings": settings_to_json(PostprocessSettings(), [RSNA_POINT], "by input format"),
        "images": [prediction_to_json(ok), prediction_to_json(bad)],
    }


def test_schema_is_valid_draft_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_written_document_validates_and_boxes_are_xywh():
    document = _document()
    validate_output(document)
    assert document["images"][0]["boxes"] == [
        {"x": 10.0, "y": 20.0, "width": 100.0, "height": 200.0, "score": pytest.approx(0.63)}
    ]
    assert document["images"][1]["error"] == "not a DICOM file" and document["images"][1]["boxes"] is None


def test_dicom_identity_and_both_pixel_spacings_are_written():
    entry = _document()["images"][0]
    assert (entry["study_instance_uid"], entry["series_instance_uid"], entry["sop_instance_uid"]) == (
        "1.2.1",
        "1.2.2",
        "1.2.3",
    )
    assert (entry["pixel_spacing_row_mm"], entry["pixel_spacing_column_mm"]) == (0.139, 0.143)


def test_anonymize_leaves_out_the_patient_id_and_keeps_the_rest():
    document = _document()
    ok = ImagePrediction(**_ok_fields())
    anonymous = prediction_to_json(ok, anonymize=True)
    assert anonymous["patient_id"] is None and prediction_to_json(ok)["patient_id"] == "p1"
    assert {k: v for k, v in anonymous.items() if k != "patient_id"} == {
        k: v for k, v in document["images"][0].items() if k != "patient_id"
    }
    document.update(anonymized=True, images=[anonymous])
    validate_output(document)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version="1.0"), "at schema_version"),
        (lambda d: d["images"][0].pop("operating_point"), "at images/0"),
        (lambda d: d["images"][0].update(box_outcome="maybe"), "at images/0"),
        (lambda d: d["images"][0]["operating_point"].update(threshold=1.2), "at images/0"),
        (lambda d: d["settings"].pop("operating_points"), "at settings"),
        (lambda d: d["images"][0].pop("pneumonia"), "at images/0"),
        (lambda d: d["images"][0]["boxes"][0].update(width=0), "at images/0"),
        (lambda d: d["images"][0]["class_probabilities"].update(Normal=1.5), "at images/0"),
        (lambda d: d["images"][1].update(boxes=[]), "at images/1"),
        (lambda d: d["settings"].update(shrink_factor=0), "at settings/shrink_factor"),
        (lambda d: d.update(extra=1), "at <root>"),
        (lambda d: d.pop("anonymized"), "at <root>"),
        (lambda d: d.pop("gate_model"), "at <root>"),
        (lambda d: d.update(gate_model={"name": "resnet18"}), "at gate_model"),
        (lambda d: d["model"].pop("task"), "at model"),
        (lambda d: d["model"].update(task="kermany4"), "at model"),
        (lambda d: d["images"][0].update(pixel_spacing_row_mm=0), "at images/0"),
        (lambda d: d["images"][1].update(study_instance_uid="1.2"), "at images/1"),
    ],
)
def test_schema_rejects_malformed_documents(mutate, message):
    document = copy.deepcopy(_document())
    mutate(document)
    with pytest.raises(ValueError, match=message):
        validate_output(document)


def test_a_gate_model_is_a_model_block_like_model():
    document = _document()
    document["gate_model"] = {
        **document["model"],
        "name": "resnet18",
        "task": "rsna2",
        "checkpoint": "runs/cls/checkpoints/best.pt",
    }
    validate_output(document)


def test_the_schema_names_every_config_task_and_nothing_else():
    task = json.loads(SCHEMA_PATH.read_text())["$defs"]["model_info"]["properties"]["task"]
    assert tuple(task["enum"]) == TASKS


def test_a_box_outside_its_image_is_rejected():
    document = _document()
    document["images"][0]["boxes"][0]["x"] = 350.0  # 350 + 100 > 400
    with pytest.raises(ValueError, match="images/0/boxes/0 extends outside the 400x300 image"):
        validate_output(document)


def test_the_schema_version_is_the_written_one():
    assert json.loads(SCHEMA_PATH.read_text())["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_a_prediction_without_its_operating_point_cannot_be_written():
    with pytest.raises(ValueError, match="scan.dcm: a prediction needs its operating_point and box_outcome"):
        prediction_to_json(
            ImagePrediction(source="scan.dcm", width_px=10, height_px=10, pneumonia=True, pneumonia_probability=0.9)
        )


def test_a_full_disk_never_leaves_half_a_boxes_json(tmp_path):
    """A failed write keeps the previous valid boxes.json, never a part-written file."""
    big = _document()
    big["images"] = big["images"] * 400
    with small_filesystem(tmp_path / "full", size_kib=256) as full:
        target = write_boxes_json(full / "boxes.json", _document())
        before = target.read_bytes()
        fill_disk(full)
        with pytest.raises(OutputWriteError, match=r"boxes\.json: cannot write \(No space left on device\)$"):
            write_boxes_json(target, big)
        assert target.read_bytes() == before
        validate_output(json.loads(before))
        assert sorted(p.name for p in full.iterdir()) == ["boxes.json", "fill"]


def test_a_write_error_keeps_the_previous_boxes_json(tmp_path, monkeypatch):
    target = write_boxes_json(tmp_path / "boxes.json", _document())
    before = target.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(OutputWriteError, match=r"boxes\.json: cannot write \(No space left on device\)$"):
        write_boxes_json(target, _document())
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["boxes.json"]
