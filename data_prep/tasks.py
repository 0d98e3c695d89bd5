"""The classification tasks (config key `task`): their classes, labels and records. No torch.

task      classes (index order)                        dataset   label of a record
detection (the detector and its image head)            any       -
kermany2  normal, pneumonia                            kermany   record.target
kermany3  normal, bacterial, viral (KERMANY_SUBTYPES)  kermany   record.subtype's index
rsna2     not pneumonia, pneumonia (Lung Opacity)      rsna      record.target            (custom too)
rsna3     the three RSNA_CLASSES                       rsna      record.rsna_class's index (custom too)

records_for_task(records, task)   the records a task trains and is evaluated on
class_counts(records, task)       images per class (weighted cross-entropy's weights)
"""

from __future__ import annotations

from typing import Sequence

from data_prep.records import KERMANY_SUBTYPES, RSNA_CLASSES, ImageRecord

DETECTION_TASK = "detection"
# task -> class names in logit order; a binary task's one logit is the second class's.
TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "kermany2": ("normal", "pneumonia"),
    "kermany3": KERMANY_SUBTYPES,
    "rsna2": ("not pneumonia", "pneumonia"),
    "rsna3": RSNA_CLASSES,
}
CLASSIFICATION_TASKS: tuple[str, ...] = tuple(TASK_CLASSES)
TASKS: tuple[str, ...] = (DETECTION_TASK, *CLASSIFICATION_TASKS)
TASK_DATASET: dict[str, str] = {"kermany2": "kermany", "kermany3": "kermany", "rsna2": "rsna", "rsna3": "rsna"}
# every dataset a task reads: the rsna tasks also read one's own images ('custom'), whose labels
# carry the RSNA classes (data_prep.own_labels)
TASK_DATASETS: dict[str, tuple[str, ...]] = {
    "kermany2": ("kermany",),
    "kermany3": ("kermany",),
    "rsna2": ("rsna", "custom"),
    "rsna3": ("rsna", "custom"),
}
# which sample-target key (detect.data.dataset) holds a task's label
TASK_TARGET_KEY: dict[str, str] = {
    "kermany2": "pneumonia",
    "kermany3": "subtype",
    "rsna2": "pneumonia",
    "rsna3": "rsna_class",
}


def num_outputs(task: str) -> int:
    """K: 1 logit for the binary tasks, one per class for the three-class ones."""
    n_classes = len(TASK_CLASSES[task])
    return 1 if n_classes == 2 else n_classes


def record_label(record: ImageRecord, task: str) -> int:
    """The class index of `record` for `task` (the same as its sample target's TASK_TARGET_KEY), -1 if none."""
    if task in ("kermany2", "rsna2"):
        return int(record.target)
    if task == "kermany3":
        return KERMANY_SUBTYPES.index(record.subtype) if record.subtype in KERMANY_SUBTYPES else -1
    return RSNA_CLASSES.index(record.rsna_class) if record.rsna_class in RSNA_CLASSES else -1


def records_for_task(records: Sequence[ImageRecord], task: str) -> list[ImageRecord]:
    """The records a task trains and evaluates on: its dataset's images (all records for detection)."""
    if task == DETECTION_TASK:
        return list(records)
    return [r for r in records if r.dataset in TASK_DATASETS[task] and record_label(r, task) >= 0]


def class_counts(records: Sequence[ImageRecord], task: str) -> list[int]:
    """Images per class of `task` (TASK_CLASSES order) among `records`."""
    counts = [0] * len(TASK_CLASSES[task])
    for record in records:
        label = record_label(record, task)
        if label >= 0:
            counts[label] += 1
    return counts
