"""Which pneumonia decision threshold applies to an image: the operating point rules of `detect infer`.

The checkpoint stores one operating point per training dataset, each chosen on that dataset's
val split. By default DICOM inputs take the RSNA one and PNG / JPEG inputs the Kermany one (the
formats the two sets come in); a model trained on one dataset uses its one point for every
input. `--threshold-from DATASET` picks one stored point for every image; `--pneumonia-threshold
X` gives a number. Without any stored point the decision is at 0.5, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from data_prep.errors import DetectError
from data_prep.records import DATASETS
from detect.predictions import DEFAULT_PNEUMONIA_THRESHOLD, OperatingPoint

RULE_BY_FORMAT = "by input format: DICOM -> rsna, PNG/JPEG -> kermany (else the checkpoint's only one)"
RULE_COMMAND_LINE = "command line (--pneumonia-threshold)"


@dataclass(frozen=True)
class ThresholdChoice:
    """How images get their operating point: a number for all (`explicit`), one dataset's
    stored point for all (`dataset`), or by input format (neither)."""

    explicit: float | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.explicit is not None and not (math.isfinite(self.explicit) and 0.0 <= self.explicit <= 1.0):
            raise DetectError(f"pneumonia threshold must lie in [0, 1], got {self.explicit}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise DetectError(f"--threshold-from '{self.dataset}' is unknown; choose one of: {', '.join(DATASETS)}")
        if self.explicit is not None and self.dataset is not None:
            raise DetectError("give either --pneumonia-threshold or --threshold-from, not both")

    def rule(self) -> str:
        if self.explicit is not None:
            return RULE_COMMAND_LINE
        return f"the {self.dataset} threshold for every image (--threshold-from)" if self.dataset else RULE_BY_FORMAT

    def offered(self, stored: dict[str, OperatingPoint]) -> list[OperatingPoint]:
        """The operating points this run may use, as boxes.json's settings list them."""
        if self.explicit is not None:
            return [OperatingPoint("any", self.explicit, RULE_COMMAND_LINE)]
        if self.dataset is not None and self.dataset not in stored and "any" not in stored:
            available = ", ".join(sorted(stored)) or "none"
            raise DetectError(
                f"--threshold-from {self.dataset}: the checkpoint stores no {self.dataset} threshold "
                f"(it has: {available}); pass --pneumonia-threshold instead"
            )
        return [stored[k] for k in sorted(stored)] or [default_operating_point()]


def default_operating_point() -> OperatingPoint:
    return OperatingPoint(
        "any",
        DEFAULT_PNEUMONIA_THRESHOLD,
        f"default {DEFAULT_PNEUMONIA_THRESHOLD} (the checkpoint stores no threshold)",
    )


def pick_operating_point(
    stored: dict[str, OperatingPoint], choice: ThresholdChoice, *, is_dicom: bool
) -> OperatingPoint:
    """The operating point of one image: see `ThresholdChoice` and the module docstring."""
    if choice.explicit is not None:
        return OperatingPoint("any", choice.explicit, RULE_COMMAND_LINE)
    wanted = choice.dataset or ("rsna" if is_dicom else "kermany")
    if wanted in stored:
        return stored[wanted]
    if "any" in stored:
        return stored["any"]
    if len(stored) == 1 and choice.dataset is None:
        return next(iter(stored.values()))  # a model trained on one dataset: its threshold for all
    return default_operating_point()
