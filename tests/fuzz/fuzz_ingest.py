"""Coverage-guided fuzzing (atheris, libFuzzer) of what `detect` reads from users' files.

    python tests/fuzz/fuzz_ingest.py TARGET CORPUS_DIR [libFuzzer options]
    python tests/fuzz/fuzz_ingest.py dicom /tmp/corpus_dicom -max_total_time=600 -timeout=20 -rss_limit_mb=4096

Targets (each input is written to a file, since the readers take paths):

  dicom       data_prep.dicom.read_dicom: header, pixel-data proof, every decoder, the pixel pipeline
  header      data_prep.dicom.read_dicom_header: the header scan of `detect prepare`
  labels      data_prep.rsna.read_train_labels and read_class_info on the same bytes (both CSVs)
  submission  detect.outputs.submission.read_submission: a Kaggle submission CSV
  recipe      detect.config.load_config: a recipe YAML (size, depth and value caps, strict keys)
  multipart   detect.pacs.dicomweb.fetch_study_images against a canned DICOMweb server whose
              WADO-RS answer is the input (its first line the Content-Type, the rest the body):
              the bounded session, dicomweb-client's multipart decoding, pydicom, the UID and
              file-name checks

The contract checked: the project's DetectError family may escape, nothing else. Any other
exception is a crash: libFuzzer stops and writes the input as crash-<sha1> in the working
folder; each crash found becomes a regression test. An input that runs past -timeout or
past -rss_limit_mb is reported the same way (a hang or an allocation the limits missed).

CORPUS_DIR is seeded, when it holds no file yet, from synthetic files: an RSNA dataset by
data_prep.synth (JPEG Baseline DICOMs, both label CSVs, the sample submission) plus the DICOM
variants tests/data_prep/dicom_fixtures.py writes (native 8/12/16-bit, MONOCHROME1, big
endian, implicit VR, RLE, JPEG 2000, a VOI LUT sequence) and a few submission rows.
This file is not collected by pytest (its name does not start with test_); .ci/run runs each
target for a few seconds as a smoke test.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a clone without installing

with atheris.instrument_imports(include=["data_prep", "pydicom", "detect.outputs.submission"]):
    import pydicom  # noqa: F401  (instrumented: the header parse is part of what is fuzzed)

    from data_prep.dicom import read_dicom, read_dicom_header
    from data_prep.errors import DetectError
    from data_prep.rsna import read_class_info, read_train_labels
    from detect.outputs.submission import read_submission

TARGETS = ("dicom", "header", "labels", "submission", "recipe", "multipart")
_SCRATCH = Path(tempfile.mkdtemp(prefix="fuzz_ingest_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def _as_file(data: bytes, name: str) -> Path:
    path = _SCRATCH / name
    path.write_bytes(data)
    return path


def _run_dicom(data: bytes) -> None:
    read_dicom(_as_file(data, "input.dcm"))


def _run_header(data: bytes) -> None:
    read_dicom_header(_as_file(data, "input.dcm"))


def _run_labels(data: bytes) -> None:
    path = _as_file(data, "labels.csv")
    for parse in (read_train_labels, read_class_info):
        try:
            parse(path)
        except DetectError:
            pass


def _run_submission(data: bytes) -> None:
    read_submission(_as_file(data, "submission.csv"))


def _run_recipe(data: bytes) -> None:
    from detect.config import load_config

    load_config(_as_file(data, "recipe.yaml"))


_MULTIPART_STUDY = "1.2.826.0.1.3680043.8.498.1"
_MULTIPART_SERIES = (
    b'[{"0020000E": {"vr": "UI", "Value": ["1.2.826.0.1.3680043.8.498.2"]}, "00080060": {"vr": "CS", "Value": ["CR"]}}]'
)


def _run_multipart(data: bytes) -> None:
    """The input as the WADO-RS answer of a canned server (no socket: a requests adapter answers)."""
    import requests
    from requests.adapters import BaseAdapter

    from detect.pacs.dicomweb import DicomWebLimits, connect, fetch_study_images

    content_type, _, body = data.partition(b"\n")

    class Canned(BaseAdapter):
        def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN201 - requests' adapter interface
            response = requests.Response()
            response.status_code, response.url, response.request = 200, request.url, request
            qido = request.url.split("?", 1)[0].endswith("/series")
            response.headers["Content-Type"] = (
                "application/dicom+json" if qido else content_type.decode("latin-1").strip()
            )
            response.raw = io.BytesIO(_MULTIPART_SERIES if qido else body)
            return response

        def close(self) -> None:
            pass

    url = "http://pacs.invalid/dicom-web"
    client = connect(url, DicomWebLimits(deadline_s=20, max_response_bytes=1 << 20, max_instances=50))
    client._session.mount("http://", Canned())
    folder = _SCRATCH / "multipart"
    try:
        fetch_study_images(client, url, _MULTIPART_STUDY, folder)
    finally:
        for path in folder.glob("*"):
            path.unlink()


_RUNNERS = {
    "dicom": _run_dicom,
    "header": _run_header,
    "labels": _run_labels,
    "submission": _run_submission,
    "recipe": _run_recipe,
    "multipart": _run_multipart,
}
# The targets whose modules are instrumented only when they are fuzzed (their imports are heavier).
_LATE_IMPORTS = {
    "recipe": ("detect.recipe", "detect.config", "yaml"),
    "multipart": ("detect.pacs", "dicomweb_client", "requests", "urllib3"),
}


def _one_input(target: str):
    run = _RUNNERS[target]

    def test_one_input(data: bytes) -> None:
        try:
            run(data)
        except DetectError:
            pass  # the contract: a one-line user-facing error

    return test_one_input


def write_seeds(target: str, corpus: Path) -> int:
    """Fill `corpus` with synthetic seed files for `target`; return how many were written."""
    from data_prep.synth import synth_rsna

    corpus.mkdir(parents=True, exist_ok=True)
    if target in ("recipe", "multipart"):
        seeds = _recipe_seeds() if target == "recipe" else _multipart_seeds()
        for name, data in seeds.items():
            (corpus / name).write_bytes(data)
        return len(seeds)
    source = Path(tempfile.mkdtemp(prefix="fuzz_seeds_"))
    synth_rsna(source / "rsna", n_images=4, n_test_images=0, size_px=64, seed=0)
    rsna = source / "rsna"
    seeds: dict[str, bytes] = {}
    if target in ("dicom", "header"):
        for i, path in enumerate(sorted((rsna / "stage_2_train_images").glob("*.dcm"))):
            seeds[f"rsna_{i}.dcm"] = path.read_bytes()
        seeds.update(_fixture_dicoms(source))
    elif target == "labels":
        seeds["labels.csv"] = (rsna / "stage_2_train_labels.csv").read_bytes()
        seeds["classes.csv"] = (rsna / "stage_2_detailed_class_info.csv").read_bytes()
    else:
        seeds["sample.csv"] = (rsna / "stage_2_sample_submission.csv").read_bytes()
        seeds["boxes.csv"] = (
            b'patientId,PredictionString\na,0.9 10 20 30 40 0.5 1.5 2 3 4\nb,\n"c","0.25 0 0 1024 1024"\n'
        )
    for name, data in seeds.items():
        (corpus / name).write_bytes(data)
    return len(seeds)


def _recipe_seeds() -> dict[str, bytes]:
    """The shipped recipes, plus an alias, a deep list, a duplicate key and typed values."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    seeds = {f"{p.stem}.yaml": p.read_bytes() for p in sorted(configs.glob("*.yaml"))}
    seeds["alias.yaml"] = b"name: a\nx: &x [1, 2]\ntrain:\n  step_epochs: *x\n"
    seeds["deep.yaml"] = b"name: d\ntrain:\n  step_epochs: [[[[[[1]]]]]]\n"
    seeds["twice.yaml"] = b"name: t\nname: u\n"
    seeds["types.yaml"] = b"name: !!binary aGk=\nseed: 2026-12-07\ntrain: {epochs: 1e3, lr: .inf}\n"
    return seeds


def _multipart_seeds() -> dict[str, bytes]:
    """A well-formed WADO-RS answer of one tiny DICOM, and a few broken ones."""
    from tests.data_prep.dicom_fixtures import make_dataset, textured_image

    ds = make_dataset(textured_image(8, 8, seed=1))
    ds.SOPInstanceUID, ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.3", _MULTIPART_STUDY
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    part = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue() + b"\r\n--b--\r\n"
    head = b'multipart/related; type="application/dicom"; boundary=b\n'
    return {
        "good": head + part,
        "no_boundary": b"multipart/related\n" + buffer.getvalue(),
        "html": b"text/html\n<html>log in</html>",
        "empty": head,
        "two": head + part[:-4] + part,
    }


def _fixture_dicoms(folder: Path) -> dict[str, bytes]:
    """The DICOM variants the tests build, so the fuzzer starts inside every decoder."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRBigEndian, JPEG2000Lossless, RLELossless

    from tests.data_prep.dicom_fixtures import make_dataset, textured_image

    variants = {
        "native8": make_dataset(textured_image(16, 12, seed=1)),
        "native12_window": make_dataset(
            textured_image(16, 16, seed=2, bits=12),
            bits_stored=12,
            WindowCenter=2048,
            WindowWidth=4096,
            RescaleSlope=2,
            RescaleIntercept=-10,
        ),
        "native16_mono1": make_dataset(textured_image(12, 16, seed=3, bits=16), photometric="MONOCHROME1"),
        "big_endian": make_dataset(
            textured_image(8, 8, seed=4, bits=12), bits_stored=12, transfer_syntax=ExplicitVRBigEndian
        ),
    }
    voi = make_dataset(textured_image(8, 8, seed=5, bits=12), bits_stored=12)
    item = Dataset()
    item.add_new(0x00283002, "US", [16, 0, 12])  # LUTDescriptor: entries, first input, bits
    item.add_new(0x00283006, "US", list(range(0, 4096, 256)))  # LUTData
    voi.VOILUTSequence = Sequence([item])
    variants["voi_lut"] = voi
    for name, syntax in (("rle", RLELossless), ("j2k", JPEG2000Lossless)):
        ds = make_dataset(textured_image(16, 16, seed=6, bits=12), bits_stored=12)
        try:
            ds.compress(syntax)
        except Exception:  # an encoder plugin missing on this machine: that seed is left out
            continue
        variants[name] = ds
    seeds = {}
    for name, ds in variants.items():
        path = folder / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        seeds[f"{name}.dcm"] = path.read_bytes()
    implicit = make_dataset(textured_image(8, 8, seed=7))
    del implicit.file_meta  # a legacy raw dataset: no preamble, implicit VR
    path = folder / "implicit.dcm"
    implicit.save_as(path, implicit_vr=True, little_endian=True)
    seeds["implicit_raw.dcm"] = path.read_bytes()
    return seeds


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in TARGETS:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        raise SystemExit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} CORPUS_DIR [libFuzzer options]")
    target, corpus = argv[1], Path(argv[2])
    if not corpus.is_dir() or not any(corpus.iterdir()):
        print(f"seeded {corpus} with {write_seeds(target, corpus)} synthetic files", file=sys.stderr)
    warnings.simplefilter("ignore")  # pydicom's warnings on mangled headers: noise at 1000s of inputs/s
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    logging.getLogger("dicomweb_client").setLevel(logging.CRITICAL)
    if target in _LATE_IMPORTS:
        with atheris.instrument_imports(include=list(_LATE_IMPORTS[target])):
            try:
                _RUNNERS[target](b"")  # imports the target's modules, instrumented
            except DetectError:
                pass

    atheris.Setup([argv[0], *argv[3:], str(corpus)], _one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
