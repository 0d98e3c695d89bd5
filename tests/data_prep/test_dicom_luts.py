"""data_prep.dicom's display pipeline against pydicom's own LUT functions, on fixture files.

The pipeline calls pydicom where pydicom gives the same pixels (``apply_modality_lut``,
``apply_voi``). The window and the polarity step are written by hand (why, with timings:
data_prep.dicom.window_to_unit and _shows_minimum_white); here the window is held to
``pydicom.pixels.apply_windowing`` pixel for pixel, and the behaviour of
``apply_presentation_lut`` that rules it out is pinned.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_presentation_lut, apply_windowing

from data_prep.dicom import read_dicom, to_display_uint8
from tests.data_prep.dicom_fixtures import make_dataset, textured_image, write_dicom

TEXTURE_12BIT = textured_image(96, 128, seed=7, bits=12)
WINDOW = dict(bits_stored=12, RescaleSlope=1.5, RescaleIntercept=-100, WindowCenter=1800, WindowWidth=1200)

# name -> (stored pixels, write_dicom keywords); every case has a window, the stage compared
CASES = {
    "linear": (TEXTURE_12BIT, WINDOW),
    "linear_exact": (TEXTURE_12BIT, dict(WINDOW, VOILUTFunction="LINEAR_EXACT")),
    "sigmoid": (TEXTURE_12BIT, dict(WINDOW, VOILUTFunction="SIGMOID")),
    "ct_like_rescale": (
        TEXTURE_12BIT,
        dict(RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=3000, WindowWidth=4001),
    ),
    "fractional_rescale": (TEXTURE_12BIT, dict(WINDOW, RescaleSlope=0.37, RescaleIntercept=12.5, WindowCenter=700)),
    "negative_slope": (TEXTURE_12BIT, dict(WINDOW, RescaleSlope=-1, RescaleIntercept=4095, WindowCenter=2000)),
    "no_rescale": (TEXTURE_12BIT, dict(bits_stored=12, WindowCenter=2048, WindowWidth=2048)),
    "threshold_width_1": (TEXTURE_12BIT, dict(bits_stored=12, WindowCenter=2048, WindowWidth=1)),
    "multi_valued": (TEXTURE_12BIT, dict(WINDOW, WindowCenter=[1800, 100], WindowWidth=[1200, 10])),
    "signed_16bit": (TEXTURE_12BIT.astype(np.int16) - 2048, dict(WindowCenter=0, WindowWidth=2000)),
    "8bit": (textured_image(96, 128, seed=8), dict(WindowCenter=128, WindowWidth=100)),
    "monochrome1": (TEXTURE_12BIT, dict(WINDOW, photometric="MONOCHROME1")),
    "presentation_lut_inverse": (TEXTURE_12BIT, dict(WINDOW, PresentationLUTShape="INVERSE")),
}


def _pydicom_display(ds: Dataset) -> np.ndarray:
    """The display pixels from pydicom's functions alone: modality LUT, then the window into
    the output range 0..255 (PS3.3 C.11.2.1.2 with y_min = 0, y_max = 255: the range pydicom
    takes from BitsStored = 8 with no rescale), then the polarity."""
    values = apply_modality_lut(ds.pixel_array, ds)
    output_range = Dataset()
    output_range.PhotometricInterpretation = "MONOCHROME2"
    output_range.BitsStored = 8
    output_range.PixelRepresentation = 0
    for keyword in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
        if keyword in ds:
            setattr(output_range, keyword, ds[keyword].value)
    display = np.clip(np.rint(apply_windowing(values, output_range)), 0, 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1" or ds.get("PresentationLUTShape") == "INVERSE":
        display = 255 - display
    return display


@pytest.mark.parametrize("name", list(CASES))
def test_window_matches_pydicom_apply_windowing_pixel_for_pixel(tmp_path, name):
    pixels, tags = CASES[name]
    path = write_dicom(tmp_path / f"{name}.dcm", pixels, **tags)
    ours, _ = read_dicom(path)
    theirs = _pydicom_display(pydicom.dcmread(path))
    assert len(np.unique(ours)) >= 2  # the window lands inside the image: not all one grey
    np.testing.assert_array_equal(ours, theirs)


def test_pydicom_presentation_lut_inverse_subtracts_from_the_image_maximum():
    # C.11.6.1.2: P-Value = maximum value - output value, the maximum of the output range (255).
    # pydicom's apply_presentation_lut takes the array's own maximum instead, so it stays unused.
    display = np.array([[0, 100, 200]], dtype=np.uint8)
    ds = make_dataset(display, PresentationLUTShape="INVERSE")
    assert apply_presentation_lut(display, ds).tolist() == [[200, 100, 0]]
    assert to_display_uint8(display, ds).tolist() == [[255, 155, 55]]
