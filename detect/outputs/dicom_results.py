"""One image's DICOM results on disk: the SR and / or GSPS of each prediction, in their folders.

    writer = DicomResultWriter(algorithm, sr_dir=..., gsps_dir=..., anonymize=False)
    writer.write(header, prediction)    -> the files written for this image ([] if it cannot have any)
    writer.written, writer.problems     every file written; one line per image that got none

File names are the source's SOP Instance UID plus `_SR.dcm` / `_GSPS.dcm`: one pair per source,
the same name on every run (a repeated run rewrites the same files, with the same UIDs). The
UID is checked against the DICOM UI rules first (check_source) and the name built with
`child_path`, so a header value cannot lead a file out of its folder.
An input that cannot have a DICOM result (a PNG, a DICOM without its UIDs) is reported in
`problems`, never fatal to the batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.records import DicomHeader
from data_prep.safe_paths import child_path
from detect.extras import require
from detect.outputs.dicom_common import AlgorithmInfo, DicomOutputError, check_source, write_dicom_file
from detect.predictions import ImagePrediction


@dataclass
class DicomResultWriter:
    """Writes the SR (when `sr_dir`) and the GSPS (when `gsps_dir`) of each prediction."""

    algorithm: AlgorithmInfo | None  # None when neither folder is given
    sr_dir: Path | None = None
    gsps_dir: Path | None = None
    anonymize: bool = False
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.enabled:  # highdicom builds both objects: the pacs extra, checked before any image
            require("pacs", "DICOM SR / presentation state output (--dicom-sr, --dicom-gsps)", ("highdicom",))

    @property
    def enabled(self) -> bool:
        return self.sr_dir is not None or self.gsps_dir is not None

    def write(self, header: DicomHeader | None, prediction: ImagePrediction) -> list[Path]:
        if self.algorithm is None or not self.enabled or prediction.error is not None:
            return []
        try:
            header = check_source(header, prediction.source)
        except DicomOutputError as exc:
            self.problems.append(str(exc))
            return []
        # highdicom (the pacs extra) is imported only here, where a DICOM result is written
        from detect.outputs.dicom_gsps import build_gsps
        from detect.outputs.dicom_sr import build_sr

        algorithm = self._for_image(prediction)
        paths = []
        if self.sr_dir is not None:
            sr = build_sr(header, prediction, algorithm, anonymize=self.anonymize)
            paths.append(write_dicom_file(child_path(self.sr_dir, f"{header.sop_instance_uid}_SR.dcm"), sr))
        if self.gsps_dir is not None:
            gsps = build_gsps(header, prediction, algorithm, anonymize=self.anonymize)
            paths.append(write_dicom_file(child_path(self.gsps_dir, f"{header.sop_instance_uid}_GSPS.dcm"), gsps))
        self.written += paths
        return paths

    def _for_image(self, prediction: ImagePrediction) -> AlgorithmInfo:
        """The algorithm's parameters plus this image's operating point (thresholds differ by dataset)."""
        assert self.algorithm is not None
        point = prediction.operating_point
        if point is None:
            return self.algorithm
        extra = f"pneumonia_threshold={point.threshold:.6g} ({point.dataset}: {point.source})"
        return dataclasses.replace(self.algorithm, parameters=self.algorithm.parameters + (extra,))
