"""Patient-level splits: no leakage, determinism, stratification, Kermany's folder rules."""

from __future__ import annotations

from collections import Counter

import pytest

from data_prep.errors import ConfigError
from data_prep.records import RSNA_CLASSES, ImageRecord
from data_prep.splits import (
    assign_patient_splits,
    carve_patients,
    patient_strata,
    patients_in_several_splits,
)


def rsna_records(class_counts: dict[str, int]) -> list[ImageRecord]:
    records = []
    for cls, count in class_counts.items():
        for i in range(count):
            pid = f"{cls[:3]}-{i:04d}"
            records.append(
                ImageRecord(
                    image_id=pid,
                    dataset="rsna",
                    path=f"stage_2_train_images/{pid}.dcm",
                    patient_id=pid,
                    target=int(cls == "Lung Opacity"),
                    has_box_labels=True,
                    rsna_class=cls,
                )
            )
    return records


def kermany_record(source_split: str, name: str, patient_id: str, subtype: str) -> ImageRecord:
    label = "NORMAL" if subtype == "normal" else "PNEUMONIA"
    return ImageRecord(
        image_id=f"{source_split}/{label}/{name}",
        dataset="kermany",
        path=f"chest_xray/{source_split}/{label}/{name}.jpeg",
        patient_id=patient_id,
        target=int(label == "PNEUMONIA"),
        has_box_labels=False,
        subtype=subtype,
        source_split=source_split,
    )


def kermany_records() -> list[ImageRecord]:
    """40 train-only patients with 1-3 images each, 2 val-folder patients (one also in train/),
    and test patients whose numbers repeat train's (different children, prefixed ids)."""
    records = []
    subtypes = ["normal", "bacterial", "viral"]
    for n in range(1, 41):
        subtype = subtypes[n % 3]
        for k in range(1 + n % 3):
            if subtype == "normal":
                records.append(kermany_record("train", f"IM-{n:04d}-{k + 1:04d}", f"{n:04d}", "normal"))
            else:
                kind = "bacteria" if subtype == "bacterial" else "virus"
                records.append(kermany_record("train", f"person{n}_{kind}_{k}", f"person{n}", subtype))
    # person100 has images in both train/ and val/: one child, so both must land in val.
    records.append(kermany_record("train", "person100_bacteria_1", "person100", "bacterial"))
    records.append(kermany_record("val", "person100_bacteria_2", "person100", "bacterial"))
    records.append(kermany_record("val", "NORMAL2-IM-0999-0001", "NORMAL2-0999", "normal"))
    for n in (1, 2, 3):
        records.append(kermany_record("test", f"person{n}_bacteria_{n}", f"test/person{n}", "bacterial"))
        records.append(kermany_record("test", f"IM-{n:04d}-0001", f"test/{n:04d}", "normal"))
    return records


def splits_of(records) -> dict[str, str]:
    return {r.image_id: r.split for r in records}


def test_rsna_split_sizes_and_no_leakage():
    records = rsna_records({"Normal": 99, "No Lung Opacity / Not Normal": 132, "Lung Opacity": 69})
    out = assign_patient_splits(records, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert [r.image_id for r in out] == [r.image_id for r in records]  # order kept
    assert Counter(r.split for r in out) == {"train": 240, "val": 30, "test": 30}
    assert patients_in_several_splits(out) == []


def test_rsna_split_is_stratified_by_class():
    counts = {"Normal": 99, "No Lung Opacity / Not Normal": 132, "Lung Opacity": 69}
    out = assign_patient_splits(rsna_records(counts), val_fraction=0.1, test_fraction=0.1, seed=5)
    total = sum(counts.values())
    for split in ("train", "val", "test"):
        in_split = [r for r in out if r.split == split]
        per_class = Counter(r.rsna_class for r in in_split)
        for cls in RSNA_CLASSES:
            # stratified: each split's class share within 2 patients of the overall share
            assert abs(per_class[cls] - counts[cls] / total * len(in_split)) <= 2, (split, cls, per_class)


def test_same_seed_same_split_other_seed_other_split():
    records = rsna_records({"Normal": 50, "No Lung Opacity / Not Normal": 50, "Lung Opacity": 50})
    a = assign_patient_splits(records, val_fraction=0.2, test_fraction=0.2, seed=1)
    b = assign_patient_splits(list(reversed(records)), val_fraction=0.2, test_fraction=0.2, seed=1)
    c = assign_patient_splits(records, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert splits_of(a) == splits_of(b)  # independent of input order
    assert splits_of(a) != splits_of(c)


def test_patient_with_many_images_stays_in_one_split():
    records = []
    for p in range(30):
        for k in range(4):
            cls = RSNA_CLASSES[p % 3]
            records.append(
                ImageRecord(
                    image_id=f"p{p}-img{k}",
                    dataset="rsna",
                    path=f"x/p{p}-{k}.dcm",
                    patient_id=f"p{p}",
                    target=int(cls == "Lung Opacity"),
                    has_box_labels=True,
                    rsna_class=cls,
                )
            )
    out = assign_patient_splits(records, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert patients_in_several_splits(out) == []
    patients_per_split = {s: {r.patient_id for r in out if r.split == s} for s in ("train", "val", "test")}
    assert {s: len(p) for s, p in patients_per_split.items()} == {"train": 18, "val": 6, "test": 6}


def test_leak_detector_finds_a_leak():
    records = rsna_records({"Normal": 2})
    leaky = [
        ImageRecord(**{**r.__dict__, "patient_id": "same", "split": s}) for r, s in zip(records, ("train", "test"))
    ]
    assert patients_in_several_splits(leaky) == ["same"]


def test_kermany_splits_follow_folders_and_carve_val_from_train():
    records = kermany_records()
    out = assign_patient_splits(records, val_fraction=0.1, test_fraction=0.3, seed=0)
    by_id = {r.image_id: r for r in out}
    assert patients_in_several_splits(out) == []
    # test = exactly the test/ folder; test_fraction is not used for Kermany
    assert {i for i, r in by_id.items() if r.split == "test"} == {i for i in by_id if i.startswith("test/")}
    # every val-folder image is val, and so is person100's train-folder image
    assert all(r.split == "val" for r in out if r.source_split == "val")
    assert by_id["train/PNEUMONIA/person100_bacteria_1"].split == "val"
    # 40 train-only patients -> round(0.1 * 40) = 4 carved into val
    carved = {r.patient_id for r in out if r.split == "val" and r.source_split == "train"} - {"person100"}
    assert len(carved) == 4
    assert {r.patient_id for r in out if r.split == "train"}.isdisjoint(carved)
    assert len({r.patient_id for r in out if r.split == "train"}) == 36
    # test ids are distinct from train ids with the same number
    assert by_id["test/PNEUMONIA/person1_bacteria_1"].patient_id == "test/person1"


def test_kermany_carved_val_is_stratified_by_subtype():
    out = assign_patient_splits(kermany_records(), val_fraction=0.3, test_fraction=0.0, seed=3)
    carved = [r for r in out if r.split == "val" and r.source_split == "train" and r.patient_id != "person100"]
    strata = patient_strata(carved)
    # 40 patients, 13-14 per subtype; 12 carved -> 4 per subtype
    assert Counter(strata.values()) == {"normal": 4, "bacterial": 4, "viral": 4}


def test_patient_stratum_is_most_frequent_class_ties_to_later():
    r = kermany_records()[0]
    mixed = [
        ImageRecord(**{**r.__dict__, "image_id": f"a{k}", "patient_id": "p", "subtype": s})
        for k, s in enumerate(["bacterial", "viral", "viral", "bacterial"])
    ]
    assert patient_strata(mixed) == {"p": "viral"}
    assert patient_strata(mixed[:3]) == {"p": "viral"}
    assert patient_strata([mixed[0]]) == {"p": "bacterial"}


@pytest.mark.parametrize("n_patients", [0, 1, 2, 3, 5])
def test_tiny_sets_never_crash_and_keep_a_training_patient(n_patients):
    records = rsna_records({"Lung Opacity": n_patients})
    out = assign_patient_splits(records, val_fraction=0.4, test_fraction=0.4, seed=0)
    assert len(out) == n_patients
    if n_patients:
        assert any(r.split == "train" for r in out)


def test_carve_falls_back_to_unstratified_when_a_class_is_single():
    strata = {"a": "x", "b": "x", "c": "y", "d": "x"}
    kept, held = carve_patients(list(strata), strata, 1, seed=0)
    assert len(held) == 1 and sorted(kept + held) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "val, test, message",
    [
        (-0.1, 0.1, "val_fraction: -0.1 is not in [0, 1)"),
        (0.1, 1.0, "test_fraction: 1.0 is not in [0, 1)"),
        (0.5, 0.5, "val_fraction + test_fraction = 1 leaves no training patients (must be < 1)"),
    ],
)
def test_invalid_fractions(val, test, message):
    with pytest.raises(ConfigError) as info:
        assign_patient_splits(rsna_records({"Normal": 3}), val_fraction=val, test_fraction=test, seed=0)
    assert str(info.value) == message
