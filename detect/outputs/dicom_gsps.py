"""DICOM Grayscale Softcopy Presentation State of one image's prediction: the boxes and their
labels as graphic annotations over the source image, for viewers that do not render SR.

    build_gsps(header, prediction, algorithm, anonymize=False) -> highdicom GSPS

One graphic layer "DETECT_AI" over the source image holds:
  - per box a closed 5-point POLYLINE in PIXEL units (the same corners as the SR and
    boxes.json) and a text "opacity N: 0.87" anchored at its top-left corner;
  - one text at the image's top-left corner with the decision, e.g.
    "pneumonia: p=0.912 (threshold 0.400)" or "no pneumonia: p=0.120 (threshold 0.400)".
The source's window (WindowCenter / WindowWidth, when it has one) and its polarity are kept, so
the image looks as it does without the presentation state: a presentation state's Presentation
LUT Shape replaces the image's own (PS3.3 C.11.6), so a MONOCHROME1 source, or one that says
INVERSE, gets INVERSE (lowest value white) and every other source IDENTITY. The SOP Instance UID is
`derived_uid(source SOP Instance UID, model sha, "gsps")`.
"""

from __future__ import annotations

import highdicom as hd

from data_prep.records import DicomHeader
from detect.outputs.dicom_common import (
    GSPS_SERIES_NUMBER,
    MANUFACTURER,
    AlgorithmInfo,
    box_polylines,
    character_set,
    check_source,
    decision_text,
    source_dataset,
    source_names_copied_as_they_are,
)
from detect.outputs.uids import derived_uid
from detect.predictions import ImagePrediction

LAYER_NAME = "DETECT_AI"
LABEL_YELLOW = hd.color.CIELabColor(97.1, -21.6, 94.5)  # shows on black lungs and white bone alike


def _voi(header: DicomHeader) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    identity = header.identity
    if identity is None or identity.window_center is None or not identity.window_width:
        return None
    return [
        hd.pr.SoftcopyVOILUTTransformation(window_center=identity.window_center, window_width=identity.window_width)
    ]


def _presentation_lut(header: DicomHeader) -> hd.PresentationLUTTransformation:
    """The source's polarity, restated (the module docstring): the same rule as the display
    pixels' (data_prep.dicom: MONOCHROME1 or INVERSE shows the lowest value white)."""
    identity = header.identity
    inverse = header.photometric_interpretation.strip().upper() == "MONOCHROME1" or (
        identity is not None and identity.presentation_lut_shape == "INVERSE"
    )
    shape = hd.PresentationLUTShapeValues.INVERSE if inverse else hd.PresentationLUTShapeValues.IDENTITY
    return hd.PresentationLUTTransformation(presentation_lut_shape=shape)


def build_gsps(
    header: DicomHeader | None, prediction: ImagePrediction, algorithm: AlgorithmInfo, *, anonymize: bool = False
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """The presentation state of `prediction` on the source `header` (see the module docstring).

    Raises DicomOutputError when the source is not a DICOM or lacks its UIDs."""
    header = check_source(header, prediction.source)
    assert header.identity is not None
    source = source_dataset(header, anonymize=anonymize)
    polylines, scores = box_polylines(prediction)
    graphics = [
        hd.pr.GraphicObject(
            graphic_type=hd.pr.GraphicTypeValues.POLYLINE, graphic_data=line, units=hd.pr.AnnotationUnitsValues.PIXEL
        )
        for line in polylines
    ]
    texts = [
        hd.pr.TextObject(
            text_value=f"opacity {i + 1}: {score:.2f}",
            units=hd.pr.AnnotationUnitsValues.PIXEL,
            anchor_point=(float(line[0, 0]), float(line[0, 1])),
            anchor_point_visible=False,
            text_justification=hd.pr.TextJustificationValues.LEFT,
        )
        for i, (line, score) in enumerate(zip(polylines, scores))
    ]
    texts.append(
        hd.pr.TextObject(
            text_value=decision_text(prediction),
            units=hd.pr.AnnotationUnitsValues.PIXEL,
            anchor_point=(1.0, 1.0),
            anchor_point_visible=False,
            text_justification=hd.pr.TextJustificationValues.LEFT,
        )
    )
    layer = hd.pr.GraphicLayer(
        layer_name=LAYER_NAME, order=1, description=f"{algorithm.name} {algorithm.version}", display_color=LABEL_YELLOW
    )
    annotation = hd.pr.GraphicAnnotation(
        referenced_images=[source], graphic_layer=layer, graphic_objects=graphics or None, text_objects=texts
    )
    with source_names_copied_as_they_are():
        gsps = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=[source],
            series_instance_uid=derived_uid(header.identity.study_instance_uid, algorithm.model_sha256, "gsps-series"),
            series_number=GSPS_SERIES_NUMBER,
            sop_instance_uid=derived_uid(header.sop_instance_uid, algorithm.model_sha256, "gsps"),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm.name,
            software_versions=algorithm.version,
            device_serial_number=algorithm.model_sha256[:16],
            content_label="DETECT_AI",
            content_description=f"{algorithm.name} boxes and decision",
            graphic_layers=[layer],
            graphic_annotations=[annotation],
            voi_lut_transformations=_voi(header),
            presentation_lut_transformation=_presentation_lut(header),
            series_description=f"{algorithm.name} AI results (GSPS)",
            specific_character_set=character_set(source),
        )
    # General Series Laterality is type 2C and takes only R or L; a chest radiograph shows both
    # sides, so it is present and empty (dciodvfy: an error when absent, a warning when empty).
    gsps.Laterality = ""
    return gsps
