"""Files -> records and arrays, without torch.

DICOM and JPEG reading, RSNA and Kermany label parsing, patient-level splits, the
preprocessing cache and the synthetic datasets. `detect` builds on this package; this
package never imports torch (tests/data_prep/test_layering.py checks it).
"""

from data_prep.errors import (
    CheckpointError,
    ConfigError,
    DataFormatError,
    DetectError,
    DicomReadError,
    ImageReadError,
    LabelFileError,
    WeightsUnavailableError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataFormatError",
    "DetectError",
    "DicomReadError",
    "ImageReadError",
    "LabelFileError",
    "WeightsUnavailableError",
]
