"""detect.data.sampling: class balancing, Kermany's share, reproducible per-epoch draws."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_prep.errors import ConfigError
from data_prep.manifest import read_manifest
from data_prep.records import ImageRecord
from detect.data.dataset import build_datasets
from detect.data.sampling import build_train_sampler, derive_seed, make_weighted_sampler, sampling_weights
from tests.detect.data.test_dataset import kermany_record, rsna_record
from tests.detect.train_fixtures import make_rsna, tiny_config


def _mixed_records() -> list[ImageRecord]:
    counts = {
        ("rsna", "Normal"): 70,
        ("rsna", "No Lung Opacity / Not Normal"): 20,
        ("rsna", "Lung Opacity"): 10,
        ("kermany", "normal"): 5,
        ("kermany", "bacterial"): 30,
        ("kermany", "viral"): 15,
    }
    records = []
    for (dataset, cls), n in counts.items():
        for i in range(n):
            if dataset == "rsna":
                records.append(rsna_record(image_id=f"{cls}-{i}", rsna_class=cls, boxes=()))
            else:
                records.append(kermany_record(image_id=f"train/X/{cls}-{i}", subtype=cls))
    return records


def _group_shares(records, indices) -> dict[tuple[str, str], float]:
    groups = Counter((records[i].dataset, records[i].rsna_class or records[i].subtype) for i in indices)
    return {g: n / len(indices) for g, n in groups.items()}


def test_sampler_balances_the_classes_of_each_dataset():
    records = _mixed_records()
    draws = list(make_weighted_sampler(records, kermany_weight=1.0, num_samples=30000, seed=0))
    shares = _group_shares(records, draws)
    # RSNA keeps its natural share 100/150 split over 3 classes, Kermany 50/150 over 3.
    for group, share in shares.items():
        expected = (2 / 3 if group[0] == "rsna" else 1 / 3) / 3
        assert share == pytest.approx(expected, abs=0.01), group


def test_kermany_weight_scales_kermanys_share():
    records = _mixed_records()
    weights = sampling_weights(records, kermany_weight=2.0)
    kermany_share = sum(w for w, r in zip(weights, records) if r.dataset == "kermany")
    assert kermany_share == pytest.approx(100 / 200)  # 50 images x 2 vs 100 RSNA images x 1
    draws = list(make_weighted_sampler(records, kermany_weight=2.0, num_samples=20000, seed=1))
    assert sum(records[i].dataset == "kermany" for i in draws) / len(draws) == pytest.approx(0.5, abs=0.015)
    assert sampling_weights(records, kermany_weight=0.0)[[r.dataset == "kermany" for r in records]].sum() == 0


def test_sampler_without_balancing_keeps_natural_class_frequencies():
    records = _mixed_records()
    weights = sampling_weights(records, kermany_weight=1.0, balance_classes=False)
    np.testing.assert_allclose(weights, 1 / len(records))


def test_sampler_is_reproducible_and_sized():
    records = _mixed_records()
    first = list(make_weighted_sampler(records, kermany_weight=1.0, num_samples=None, seed=3))
    again = list(make_weighted_sampler(records, kermany_weight=1.0, num_samples=None, seed=3))
    other = list(make_weighted_sampler(records, kermany_weight=1.0, num_samples=None, seed=4))
    assert first == again and first != other and len(first) == len(records)


def test_sampler_rejects_empty_input():
    with pytest.raises(ConfigError, match="empty"):
        sampling_weights([], kermany_weight=1.0)
    with pytest.raises(ConfigError, match="only Kermany"):
        sampling_weights([kermany_record()], kermany_weight=0.0)


def test_derived_seeds_differ_by_epoch_and_rank_and_repeat():
    seeds = {derive_seed(0, epoch, rank) for epoch in range(50) for rank in range(4)}
    assert len(seeds) == 200
    assert derive_seed(0, 3, 1) == derive_seed(0, 3, 1)


@pytest.fixture(scope="module")
def rsna_dir(tmp_path_factory):
    return make_rsna(tmp_path_factory.mktemp("rsna"))


def test_epoch_sampler_is_a_function_of_the_epoch(rsna_dir):
    cfg = tiny_config()
    train_set = build_datasets([read_manifest(rsna_dir)], cfg)["train"]
    sampler = build_train_sampler(train_set, cfg)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(0)
    other = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first and len(first) == len(sampler) == len(train_set)
    assert first != other
    assert np.isin(first, np.arange(len(train_set))).all()
