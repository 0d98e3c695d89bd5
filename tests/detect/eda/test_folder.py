"""detect.eda.folder: the report of synthetic RSNA and Kermany folders, raw or prepared.

The expected numbers come from elsewhere: `detect prepare`'s summary.json, splits.csv and the
folder listing, not from data_prep.eda.
"""

import json
import re
from collections import Counter

import pandas as pd
import pytest

import data_prep.cache
from data_prep.errors import DataFormatError, DetectError
from detect.eda.folder import run_eda_folder
from tests.detect.train_fixtures import make_kermany, make_rsna

PER_CLASS = 3


def count_decodes(monkeypatch):
    """Count every image decode the cache does (in-process with workers=1)."""
    calls = Counter()
    original = data_prep.cache.read_any_image_sized

    def counting(path, target_size_px, **kwargs):
        calls[str(path)] += 1
        return original(path, target_size_px, **kwargs)

    monkeypatch.setattr(data_prep.cache, "read_any_image_sized", counting)
    return calls


def keys_of(value, found=None):
    found = set() if found is None else found
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            keys_of(item, found)
    elif isinstance(value, list):
        for item in value:
            keys_of(item, found)
    return found


def check_report_files(result):
    for name in ("report_md", "report_html", "eda_json"):
        assert result.paths[name].is_file()
    for file_name in result.plots.values():
        assert (result.out_dir / file_name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = result.paths["report_html"].read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(result.plots) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    markdown = result.paths["report_md"].read_text(encoding="utf-8")
    visible = re.sub(r"\]\([^)]*\.png\)", "]", markdown)  # a plot's file name is a link target, not text
    internal = sorted(k for k in keys_of(result.numbers) if "_" in k and k in visible)
    assert internal == [], f"raw keys in report.md: {internal}"
    for caption in re.findall(r"^\*(.*)\*$", markdown, flags=re.M):
        assert "(n = " in caption, caption
    assert json.loads(result.paths["eda_json"].read_text()) == result.numbers
    return markdown


@pytest.fixture(scope="module")
def rsna_root(tmp_path_factory):
    root = make_rsna(tmp_path_factory.mktemp("rsna") / "rsna", n_images=24, prepare=False)
    broken = sorted((root / "stage_2_train_images").glob("*.dcm"))[0]
    broken.write_bytes(b"not a dicom at all")
    return root, broken


def test_raw_rsna_root_prepared_then_reported_decoding_each_sampled_image_once(rsna_root, tmp_path, monkeypatch):
    root, broken = rsna_root
    decodes = count_decodes(monkeypatch)
    result = run_eda_folder(tmp_path / "eda", root, images_per_class=PER_CLASS, image_size_px=64, workers=1)
    summary = json.loads((root / "detect_prepared" / "summary.json").read_text())
    numbers = result.numbers
    assert numbers["source"]["prepared_now"] is True
    assert numbers["overview"]["images"] == summary["images"] == 23  # the broken file left out
    assert numbers["overview"]["positive_images"] == summary["positive_images"]
    assert numbers["overview"]["boxes"] == summary["boxes"] == numbers["location"]["boxes"]
    per_image = {str(r["boxes"]): r["images"] for r in numbers["univariate"]["boxes_per_image"] if r["images"]}
    assert per_image == summary["boxes_per_image"]
    assert {r["group"]: r["images"] for r in numbers["univariate"]["classes"]} == summary["classes"]
    views = {r["group"]: (r["images"], r["positive"]) for r in numbers["bivariate"]["positive_rate_by_view"]}
    assert views == {v: (c["images"], c["positive_images"]) for v, c in summary["views"].items()}
    splits = pd.read_csv(root / "detect_prepared" / "splits.csv")
    assert {r["split"]: r["patients"] for r in numbers["splits"]["rows"]} == splits["split"].value_counts().to_dict()
    checks = {c["check"]: c for c in numbers["quality"]["checks"]}
    unusable = checks["files that could not be used (left out)"]
    assert unusable["count"] == 1 and unusable["examples"][0].startswith(f"stage_2_train_images/{broken.name}: ")

    section = numbers["images_section"]
    sampled = [i for c in section["classes"] for i in c["sampled_ids"]]
    assert [len(c["sampled_ids"]) for c in section["classes"]] == [PER_CLASS] * 3
    assert section["decoded_now"] == len(sampled) == sum(decodes.values()) and max(decodes.values()) == 1
    assert all(c["histogram"]["images"] == PER_CLASS for c in section["classes"])
    assert {"samples", "intensity", "box_heatmap", "positive_rate", "age"} <= set(result.plots)
    markdown = check_report_files(result)
    assert "## Patients per split" in markdown and "## Images" in markdown

    decodes.clear()
    again = run_eda_folder(tmp_path / "eda2", root, images_per_class=PER_CLASS, image_size_px=64, workers=1)
    assert sum(decodes.values()) == 0  # the cache serves the sample: no image decoded twice
    assert again.numbers["source"]["prepared_now"] is False
    assert again.numbers["images_section"]["already_cached"] == len(sampled)
    assert again.numbers["images_section"]["classes"] == section["classes"]  # same seed, same sample


def test_prepared_folder_uses_its_cache_size(tmp_path):
    root = make_rsna(tmp_path / "rsna", n_images=12, prepare=True)
    result = run_eda_folder(tmp_path / "eda", root / "detect_prepared", images_per_class=2, workers=1)
    assert result.numbers["source"]["prepared_now"] is False
    assert result.numbers["images_section"]["cache_size_px"] == 512  # prepared without a cache: prepare's default
    assert (root / "detect_prepared" / "cache" / "512").is_dir()


def test_kermany_root(tmp_path):
    root = make_kermany(tmp_path / "kermany", n_images=24, prepare=False)
    result = run_eda_folder(tmp_path / "eda", root, images_per_class=2, image_size_px=64, workers=1)
    numbers = result.numbers
    listed = Counter()
    for path in (root / "chest_xray").glob("*/*/*.jpeg"):
        subtype = "normal" if path.parent.name == "NORMAL" else ("viral" if "_virus_" in path.name else "bacterial")
        listed[(path.parent.parent.name, subtype)] += 1
    by_split = numbers["univariate"]["classes_by_source_split"]
    assert {(s, r["group"]): r["images"] for s, rows in by_split.items() for r in rows if r["images"]} == dict(listed)
    assert numbers["location"] is None and numbers["univariate"]["age_years"] is None
    assert numbers["univariate"]["image_size"]["known"] == sum(listed.values())
    assert {"class_balance", "image_size_spacing", "samples", "intensity"} == set(result.plots)
    markdown = check_report_files(result)
    assert "none: Kermany has image labels only" in markdown


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match=r"empty: unrecognised layout"):
        run_eda_folder(tmp_path / "eda", tmp_path / "empty")
    with pytest.raises(DataFormatError, match=r"missing: no such folder"):
        run_eda_folder(tmp_path / "eda", tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DetectError, match=r"file: exists and is not a folder"):
        run_eda_folder(tmp_path / "file", tmp_path / "empty")
    assert not (tmp_path / "empty" / "detect_prepared").exists()
