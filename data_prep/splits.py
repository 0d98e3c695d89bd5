"""Patient-level train/val/test splits: no patient's images in two splits, ever.

Splitting works on patients, not images: every image of a patient gets its patient's split.
Each cut is scikit-learn's `train_test_split` over the sorted patient ids, stratified by the
patient's class, with `random_state=seed`, so a split is a pure function of (records, fractions,
seed) and re-running `detect prepare` reproduces it exactly.

- RSNA: test = round(test_fraction * patients), then val = round(val_fraction * patients) of
  the rest, stratified by rsna_class (one image per patient).
- custom (a folder with a COCO JSON or CSV): a split the labels declare is kept; the patients
  without one are split as RSNA, stratified by their RSNA class (data_prep.own_labels).
- Kermany: test = the dataset's own test/ folder (different children, the split every paper
  reports on); val = the 16-image val/ folder PLUS round(val_fraction * train patients)
  patients carved out of train/, stratified by subtype; train = the rest. test_fraction is
  not used. A child with images in both train/ and val/ (they share one numbering) is a val
  patient with all its images.

The stratum of a patient with images of several classes is its most frequent class, ties
going to the later (rarer) class of RSNA_CLASSES / KERMANY_SUBTYPES.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from sklearn.model_selection import train_test_split

from data_prep.errors import ConfigError
from data_prep.records import CUSTOM_DATASET, KERMANY_SUBTYPES, RSNA_CLASSES, ImageRecord


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ConfigError unless 0 <= each fraction and val + test < 1."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name}: {value} is not in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves no training patients (must be < 1)"
        )


def _stratum_of(record: ImageRecord) -> tuple[int, str]:
    if record.dataset in ("rsna", CUSTOM_DATASET):
        name = record.rsna_class or ""
        order = RSNA_CLASSES
    else:
        name = record.subtype or ""
        order = KERMANY_SUBTYPES
    return (order.index(name) if name in order else -1, name)


def patient_strata(records: Iterable[ImageRecord]) -> dict[str, str]:
    """{patient_id: stratum}: the patient's most frequent class, ties to the later class."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        counts[record.patient_id][_stratum_of(record)] += 1
    return {pid: max(c.items(), key=lambda kv: (kv[1], kv[0][0]))[0][1] for pid, c in counts.items()}


def _can_stratify(strata: Sequence[str], n_held: int) -> bool:
    # train_test_split's own preconditions for stratify=: every class twice, both sides >= #classes.
    counts = Counter(strata)
    n_classes = len(counts)
    return min(counts.values()) >= 2 and n_held >= n_classes and len(strata) - n_held >= n_classes


def carve_patients(
    patient_ids: Sequence[str], strata: dict[str, str], n_held: int, seed: int
) -> tuple[list[str], list[str]]:
    """Split sorted patients into (kept, held out) with exactly `n_held` held out, stratified when possible.

    Stratification needs every class at least twice and both sides at least one patient per
    class; on sets too small for that (tests, toy data) the cut is a plain seeded shuffle.
    """
    patients = sorted(patient_ids)
    if n_held <= 0 or not patients:
        return patients, []
    if n_held >= len(patients):
        raise ConfigError(f"cannot hold out {n_held} of {len(patients)} patients and keep any for training")
    labels = [strata[p] for p in patients]
    stratify = labels if _can_stratify(labels, n_held) else None
    kept, held = train_test_split(patients, test_size=n_held, random_state=seed, stratify=stratify)
    return sorted(kept), sorted(held)


def _split_by_fraction(
    records: list[ImageRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    strata = patient_strata(records)
    patients = sorted(strata)
    n = len(patients)
    n_test = max(0, min(round(test_fraction * n), n - 1))
    n_val = max(0, min(round(val_fraction * n), n - n_test - 1))
    rest, test = carve_patients(patients, strata, n_test, seed)
    train, val = carve_patients(rest, strata, n_val, seed)
    return {**{p: "train" for p in train}, **{p: "val" for p in val}, **{p: "test" for p in test}}


def _split_kermany(records: list[ImageRecord], val_fraction: float, seed: int) -> dict[str, str]:
    folders: dict[str, set[str]] = defaultdict(set)
    for record in records:
        folders[record.patient_id].add(record.source_split or "train")
    split_of: dict[str, str] = {}
    train_pool: list[str] = []
    for patient, seen in folders.items():
        if "test" in seen:
            split_of[patient] = "test"
        elif "val" in seen:
            split_of[patient] = "val"
        else:
            train_pool.append(patient)
    in_pool = set(train_pool)
    strata = patient_strata(r for r in records if r.patient_id in in_pool)
    n_val = round(val_fraction * len(train_pool))
    train, val = carve_patients(train_pool, strata, min(n_val, max(0, len(train_pool) - 1)), seed)
    split_of.update({p: "train" for p in train})
    split_of.update({p: "val" for p in val})
    return split_of


def _split_declared(records: list[ImageRecord], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """A custom dataset: the patients whose split the labels declare keep it (data_prep.own_labels
    gives all of a patient's images the one split declared for it); the others are split by fraction."""
    declared = {r.patient_id: r.split for r in records if r.split is not None}
    rest = [r for r in records if r.patient_id not in declared]
    return {**(_split_by_fraction(rest, val_fraction, test_fraction, seed) if rest else {}), **declared}


def assign_patient_splits(
    records: Sequence[ImageRecord], *, val_fraction: float, test_fraction: float, seed: int
) -> list[ImageRecord]:
    """Return the records (same order) with `split` set to 'train' | 'val' | 'test', by patient.

    Records of each dataset are split on their own (a patient id belongs to one dataset).
    Deterministic given (records, fractions, seed). Raises ConfigError for invalid fractions.
    """
    check_fractions(val_fraction, test_fraction)
    by_dataset: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_dataset[record.dataset].append(record)
    split_of: dict[tuple[str, str], str] = {}
    for dataset, group in by_dataset.items():
        if dataset == "kermany":
            splits = _split_kermany(group, val_fraction, seed)
        elif dataset == CUSTOM_DATASET:
            splits = _split_declared(group, val_fraction, test_fraction, seed)
        else:
            splits = _split_by_fraction(group, val_fraction, test_fraction, seed)
        split_of.update({(dataset, p): s for p, s in splits.items()})
    return [dataclasses.replace(r, split=split_of[(r.dataset, r.patient_id)]) for r in records]


def patients_in_several_splits(records: Iterable[ImageRecord]) -> list[str]:
    """Patient ids whose images fall in more than one split (must be empty: a leak otherwise)."""
    splits: dict[tuple[str, str], set] = defaultdict(set)
    for record in records:
        splits[(record.dataset, record.patient_id)].add(record.split)
    return sorted(pid for (_, pid), s in splits.items() if len(s) > 1)
