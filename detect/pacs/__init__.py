"""The DICOMweb client of `detect infer --dicomweb` (dicomweb.py); needs the pacs extra."""

from detect.extras import require

require("pacs", "detect infer --dicomweb")
