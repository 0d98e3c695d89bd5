"""Synthetic datasets in exactly the real Kaggle layouts, for tests, the demo and the benchmarks.

- `synth_rsna`: RSNA Pneumonia Detection Challenge (stage 2): both label CSVs with their
  quirks, JPEG-Baseline DICOMs with RSNA's header, a sample submission.
- `synth_kermany`: Kermany chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} with the real naming.
- `render_chest_radiograph`: the procedural radiograph both use (anatomy, opacities and other
  findings, exposure and noise), with the opacities' boxes.
- `write_jpeg_baseline_dicom`: one image as an RSNA-style DICOM file.

Real data is never fetched; these files stand in for it, so every reader is tested against
the real formats' quirks (see docs/data-formats.md).
"""

from data_prep.synth.common import MARKER_FILE, SynthSummary
from data_prep.synth.kermany import synth_kermany
from data_prep.synth.phantom import render_chest_radiograph
from data_prep.synth.rsna import synth_rsna, write_jpeg_baseline_dicom

__all__ = [
    "MARKER_FILE",
    "SynthSummary",
    "render_chest_radiograph",
    "synth_kermany",
    "synth_rsna",
    "write_jpeg_baseline_dicom",
]
