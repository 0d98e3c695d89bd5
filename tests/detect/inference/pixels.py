"""Test helper: original uint8 images straight through a predictor's two model steps."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def run_pixels(predictor, images: Sequence[np.ndarray]) -> list:
    """`predictor.run` on `predictor.prepare` of each image (a Predictor or a GatedPredictor)."""
    return predictor.run([predictor.prepare(pixels) for pixels in images])
