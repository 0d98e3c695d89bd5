"""detect.outputs.overlay: the size rule both overlays (boxes, Grad-CAM) share."""
from __future__ import annotations

from detect.outputs.overlay import display_factor, display_size


def test_display_size_brings_the_longest_side_into_512_1024():
    assert display_size(100, 160) == (512, 320)  # small: enlarged, factor 512 / 160 = 3.2
    assert display_size(700, 600) == (600, 700)  # in range: as it is
    assert display_size(2000, 1000) == (512, 1024)  # large: reduced, factor 1024 / 2000
    assert display_factor(2000, 1000) == 1024 / 2000
