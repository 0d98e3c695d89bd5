"""DICOM Comprehensive 3D SR (TID 1500 Measurement Report) of one image's prediction.

    build_sr(header, prediction, algorithm, anonymize=False) -> highdicom Comprehensive3DSR

The document (codes in detect.outputs.dicom_common, reasons in docs/dicom-output.md):

    Imaging Measurement Report (TID 1500), procedure: Plain chest X-ray
      observer: the device `detect` (name, model = checkpoint's model, version)
      image-level group (TID 1501): finding Pneumonia, referencing the source image,
          Certainty of Finding = pneumonia probability,
          Pneumonia = Present | Absent (the explicit negative when it is not pneumonia)
      one planar ROI group (TID 1410) per box: finding Opacity in Lung,
          region = closed 5-point POLYLINE in the source's pixel grid,
          Certainty of Finding = the box score, Width / Height in mm when PixelSpacing is known
      every group carries the algorithm's name, version and parameters (TID 4019)

It is in the source's study, in a series of its own, and lists the source SOP Instance as
evidence. Its SOP Instance UID is `derived_uid(source SOP Instance UID, model sha, "sr")`.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from data_prep.records import DicomHeader
from detect.outputs.dicom_common import (
    CODE_ABSENT,
    CODE_CERTAINTY,
    CODE_DEVICE,
    CODE_HEIGHT,
    CODE_IMAGING_FINDING,
    CODE_LUNG,
    CODE_OPACITY,
    CODE_PNEUMONIA,
    CODE_PRESENT,
    CODE_PROCEDURE,
    CODE_WIDTH,
    MANUFACTURER,
    SR_SERIES_NUMBER,
    UNIT_MM,
    UNIT_RATIO,
    AlgorithmInfo,
    box_polylines,
    character_set,
    check_source,
    source_dataset,
    source_names_copied_as_they_are,
)
from detect.outputs.uids import derived_uid
from detect.predictions import ImagePrediction


def _algorithm_id(algorithm: AlgorithmInfo) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, parameters=list(algorithm.parameters) or None
    )


def _observation_context(algorithm: AlgorithmInfo) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(algorithm.name, algorithm.model_sha256, "device"),
        name=algorithm.name,
        manufacturer_name=MANUFACTURER,
        model_name=algorithm.name,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(observer_type=CODE_DEVICE, observer_identifying_attributes=device)
    )


def _image_group(
    header: DicomHeader,
    prediction: ImagePrediction,
    algorithm: AlgorithmInfo,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    assert header.identity is not None
    probability = float(prediction.pneumonia_probability or 0.0)
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(header.sop_instance_uid, algorithm.model_sha256, "tracking:image"),
            identifier="pneumonia (image level)",
        ),
        finding_type=CODE_PNEUMONIA,
        finding_category=CODE_IMAGING_FINDING,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(CODE_LUNG)],
        measurements=[
            hd.sr.Measurement(name=CODE_CERTAINTY, value=probability, unit=UNIT_RATIO, algorithm_id=algorithm_id)
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=CODE_PNEUMONIA, value=CODE_PRESENT if prediction.pneumonia else CODE_ABSENT
            )
        ],
        source_images=[hd.sr.SourceImageForMeasurementGroup(header.identity.sop_class_uid, header.sop_instance_uid)],
    )


def _box_group(
    index: int,
    polyline: np.ndarray,
    score: float,
    header: DicomHeader,
    algorithm: AlgorithmInfo,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    assert header.identity is not None
    measurements = [
        hd.sr.Measurement(name=CODE_CERTAINTY, value=float(score), unit=UNIT_RATIO, algorithm_id=algorithm_id)
    ]
    if header.pixel_spacing_mm is not None:
        row_mm, column_mm = header.pixel_spacing_mm
        width_px = float(polyline[1, 0] - polyline[0, 0])
        height_px = float(polyline[2, 1] - polyline[1, 1])
        measurements += [
            hd.sr.Measurement(
                name=CODE_WIDTH, value=round(width_px * column_mm, 3), unit=UNIT_MM, algorithm_id=algorithm_id
            ),
            hd.sr.Measurement(
                name=CODE_HEIGHT, value=round(height_px * row_mm, 3), unit=UNIT_MM, algorithm_id=algorithm_id
            ),
        ]
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=polyline.astype(np.float32),
        source_image=hd.sr.SourceImageForRegion(header.identity.sop_class_uid, header.sop_instance_uid),
    )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=derived_uid(header.sop_instance_uid, algorithm.model_sha256, f"tracking:{index}"),
            identifier=f"opacity {index}",
        ),
        referenced_region=region,
        finding_type=CODE_OPACITY,
        finding_category=CODE_IMAGING_FINDING,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(CODE_LUNG)],
        measurements=measurements,
    )


def build_sr(
    header: DicomHeader | None, prediction: ImagePrediction, algorithm: AlgorithmInfo, *, anonymize: bool = False
) -> hd.sr.Comprehensive3DSR:
    """The SR of `prediction` on the source `header` (see the module docstring).

    Raises DicomOutputError when the source is not a DICOM or lacks its UIDs."""
    header = check_source(header, prediction.source)
    assert header.identity is not None
    algorithm_id = _algorithm_id(algorithm)
    polylines, scores = box_polylines(prediction)
    groups: list = [_image_group(header, prediction, algorithm, algorithm_id)]
    groups += [
        _box_group(i + 1, line, score, header, algorithm, algorithm_id)
        for i, (line, score) in enumerate(zip(polylines, scores))
    ]
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(algorithm),
        procedure_reported=CODE_PROCEDURE,
        imaging_measurements=groups,
    )
    study_uid = header.identity.study_instance_uid
    source = source_dataset(header, anonymize=anonymize)
    with source_names_copied_as_they_are():
        return hd.sr.Comprehensive3DSR(
            evidence=[source],
            specific_character_set=character_set(source),
            content=report[0],
            series_instance_uid=derived_uid(study_uid, algorithm.model_sha256, "sr-series"),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=derived_uid(header.sop_instance_uid, algorithm.model_sha256, "sr"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description=f"{algorithm.name} AI results (SR)",
            manufacturer_model_name=algorithm.name,
            software_versions=algorithm.version,
        )
