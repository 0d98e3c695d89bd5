"""`detect infer`: files -> the Detector -> one JSON line per image -> boxes.json (+ CSV, overlays).

One image's way, one function per step:

    collect_input_files(paths, glob)      files and folders -> the files to read (detect.inference.discovery)
    Detector.predict_many(files)          prepare (read, letterbox), run (model, map back, clip,
                                          TTA), finalize (decide at the image's operating point,
                                          post-process): detect.inference.api
    PartWriter.append(entry)              one line of the run's JSON Lines part, flushed per batch
    merge_entries + write_boxes_json_stream   boxes.json assembled from the parts, in input order

Streaming: nothing grows with the number of images while predicting (counts, and the failures,
are all that is kept); a run killed at any moment keeps every line written before, and
`--resume` skips what its part already holds (by path + size + mtime, or SOP Instance UID),
after checking that the checkpoint and the settings are those of the stopped run.

Reading overlaps predicting: `workers` threads read (decode) the next batches while the model
runs on the current one (detect.data.files.iter_loaded_batches, a bounded read-ahead); the
outputs keep the input order. The run logs how much of its wall time was spent waiting for
reads (`PipelineTimes`): near 0 means the model is the bottleneck, as it should be. On the CPU,
torch keeps every core for its intra-op threads (`cpu_torch_threads`), unless OMP_NUM_THREADS
says otherwise: the reader thread decodes for ~5% of the time and sleeps on the read-ahead queue
for the rest, so giving it a core of its own costs the model more than it saves
(benchmarks/bench_infer_pipeline.py measures both settings).

Gating (`gate_with`): a second checkpoint's pneumonia probability replaces the detector's own
and decides at the gate's operating points (detect.inference.gating); boxes.json's `gate_model`
names it. Explaining (`explain_dir`): a Grad-CAM heat map of the pneumonia score per image, of
the model whose probability decides (the gate when there is one; a classifier either way:
detect.inference.explaining), written as DIR/<stem>_gradcam.png.

Several processes: under `torchrun`, each rank predicts every world_size-th file of the sorted
listing into its own part; rank 0 merges all parts into one boxes.json and one submission
once every rank has finished. The decision rules are detect.inference.thresholds'.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from data_prep.atomic import check_writable
from data_prep.errors import DetectError
from data_prep.records import BadFile
from detect.data.files import default_read_workers
from detect.devices import resolve_device
from detect.distributed import DistInfo, barrier, dist_info_from_env, init_distributed
from detect.inference.api import Detector, PipelineTimes
from detect.inference.discovery import InputListing, collect_input_files
from detect.inference.explaining import explainer_for, explanation_overlays
from detect.inference.jsonl import (
    InputKey,
    PartScan,
    PartWriter,
    check_fingerprint,
    count_entries,
    merge_entries,
    part_path,
    scan_part,
)
from detect.inference.prediction import Prediction
from detect.inference.settings import InferenceSettings
from detect.outputs.boxes_json import SCHEMA_VERSION, settings_to_json, write_boxes_json_stream
from detect.outputs.dicom_common import AlgorithmInfo
from detect.outputs.dicom_results import DicomResultWriter
from detect.outputs.overlay import unique_png_name, write_overlay
from detect.outputs.submission import formula_warnings, submission_rows_from_entries, write_submission
from detect.outputs.uids import file_sha256
from detect.progress import LOG_EVERY_SECONDS, ProgressLog

LOG_EVERY_IMAGES = 500


@dataclass
class InferenceResult:
    """What `run_inference` did (counts only: the predictions are in the files it wrote)."""

    out_path: Path | None  # boxes.json; None on the ranks > 0 of a torchrun job
    part_paths: list[Path]
    n_inputs: int = 0
    n_predicted: int = 0
    n_skipped: int = 0  # already in the JSON Lines part (--resume)
    n_pneumonia: int = 0
    n_boxes: int = 0
    n_unboxed_pneumonia: int = 0  # called pneumonia, no box above the score threshold
    failures: list[BadFile] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # folders that could not be searched
    submission_path: Path | None = None
    n_overlays: int = 0
    overlay_dir: Path | None = None
    n_explained: int = 0  # Grad-CAM heat maps written (--explain)
    explain_dir: Path | None = None
    dicom_paths: list[Path] = field(default_factory=list)  # SR / GSPS files (--dicom-sr / --dicom-gsps)
    warnings: list[str] = field(default_factory=list)
    rank: int = 0
    workers: int = 0  # reader threads used
    torch_threads: int = 0  # torch's intra-op threads while predicting
    wall_s: float = 0.0  # predicting this rank's files (reading, model, writing the part)
    times: PipelineTimes = field(default_factory=PipelineTimes)

    def pipeline_line(self) -> str:
        """One line: images/s and where the time went (for the log, and the benchmark)."""
        waiting, predicting = self.times.share_of(self.wall_s)
        rate = self.times.n_images / max(self.wall_s, 1e-9)
        return (
            f"infer: {self.times.n_images} image(s) in {self.wall_s:.1f} s ({rate:.2f} images/s): "
            f"{100 * predicting:.0f}% in the model, {100 * waiting:.0f}% waiting for reads "
            f"({self.workers} reader thread(s), --threads; torch threads {self.torch_threads})"
        )

    def summary(self) -> str:
        """One line for the terminal: counts and the files written (this process's counts)."""
        text = f"predicted {self.n_predicted} image(s): {self.n_pneumonia} pneumonia, {self.n_boxes} box(es)"
        if self.n_unboxed_pneumonia:
            text += f" ({self.n_unboxed_pneumonia} pneumonia image(s) with no box above the score threshold)"
        if self.n_skipped:
            text += f"; {self.n_skipped} already predicted (--resume)"
        if self.failures:
            text += f"; {len(self.failures)} file(s) unreadable (listed in the output with their reason)"
        written = [str(p) for p in (self.out_path, self.submission_path) if p is not None]
        if self.n_overlays:
            written.append(f"{self.n_overlays} overlay PNG(s) in {self.overlay_dir}")
        if self.n_explained:
            written.append(f"{self.n_explained} Grad-CAM PNG(s) in {self.explain_dir}")
        if self.dicom_paths:
            written.append(f"{len(self.dicom_paths)} DICOM SR/GSPS file(s)")
        return text + "; wrote " + ", ".join(written or [str(p) for p in self.part_paths])


def algorithm_info(detector: Detector) -> AlgorithmInfo:
    """Who made a DICOM result (IHE AI Results): model, detect version, checkpoint hash, settings."""
    loaded = detector.model
    parameters = tuple(f"{key}={value}" for key, value in detector.settings.postprocess.to_dict().items())
    if detector.gate is not None:
        parameters += (
            f"gate_with={detector.gate.model_info['name']} sha256:{file_sha256(detector.gate.checkpoint_path)}",
        )
    return AlgorithmInfo(
        name=f"detect {loaded.model_info['name']}",
        version=str(loaded.model_info["detect_version"]),
        model_sha256=file_sha256(loaded.checkpoint_path),
        parameters=parameters,
    )


def run_fingerprint(detector: Detector) -> dict[str, Any]:
    """What must not change between a run and its --resume: the model (the checkpoint by content,
    so a moved copy still matches), the operating points it offers, and every InferenceSettings
    field that decides an entry (InferenceSettings.decision_fields)."""
    gate = detector.gate
    return {
        "schema_version": SCHEMA_VERSION,
        "checkpoint_sha256": file_sha256(detector.model.checkpoint_path),
        "model": detector.model_info["name"],
        "image_size_px": detector.model_info["image_size_px"],
        "gate_checkpoint_sha256": file_sha256(gate.checkpoint_path) if gate is not None else None,
        "operating_points": [p.to_dict() for p in detector.operating_points],
        **{f"settings.{k}": v for k, v in detector.settings.decision_fields().items()},
    }


def overlay_names(files: Sequence[Path], suffix: str = "") -> dict[str, str]:
    """One PNG name per input (`<stem><suffix>.png`), unique and the same in every run of the
    same listing (so a resumed run never overwrites another image's overlay)."""
    used: set[str] = set()
    return {str(f): unique_png_name(f.stem + suffix, used) for f in files}


def check_output_targets(
    out_path: str | Path,
    submission_path: str | Path | None,
    overlay_dir: str | Path | None,
    explain_dir: str | Path | None = None,
) -> None:
    """Every output path checked before the checkpoint is loaded and anything is predicted: a
    blocked, read-only or wrong-kind path is one OutputWriteError now, not after hours."""
    for target, what in ((out_path, "--out"), (submission_path, "--submission")):
        if target is not None:
            check_writable(target, expect="file", what=what)
    check_writable(part_path(out_path), expect="file", what="the JSON Lines part next to --out")
    if overlay_dir is not None:
        check_writable(overlay_dir, expect="folder", what="--overlay")
    if explain_dir is not None:
        check_writable(explain_dir, expect="folder", what="--explain")


@dataclass
class _Shard:
    files: list[Path]
    part: Path
    scan: PartScan


def _open_shard(
    listing: InputListing,
    out_path: Path,
    info: DistInfo,
    resume: bool,
    fingerprint: dict[str, Any],
    log: Callable[[str], None],
) -> tuple[_Shard, PartWriter]:
    """This rank's files and its JSON Lines part: continued with --resume (after checking the
    run is the same one; a torn last line cut off), else started afresh."""
    files = listing.files[info.rank :: info.world_size]
    part = part_path(out_path, info.rank, info.world_size)
    scan = PartScan()
    if resume and part.is_file():
        scan = scan_part(part)
        check_fingerprint(scan.fingerprint, fingerprint, part)
        if scan.torn:
            log(f"{part}: a torn last line (the stopped run was killed while writing it) was dropped")
        writer = PartWriter(part, fingerprint, truncate_at=scan.valid_bytes)
    else:
        if part.is_file() and part.stat().st_size > 0:
            log(f"{part}: starting afresh (pass --resume to continue the run it holds)")
        writer = PartWriter(part, fingerprint)
    return _Shard(files, part, scan), writer


def cpu_torch_threads(workers: int, cpu_count: int | None = None) -> int:
    """torch's intra-op threads for CPU inference beside `workers` reader threads: every core.

    Measured on a quiet 2-core machine (benchmarks/bench_infer_pipeline.py, the CPU recipe's
    model, 1024 px DICOMs): decoding is ~5% of the serial run, and with one reader thread torch
    on both cores gave 7.9 images/s against 6.4 on the one core the reader leaves. A loaded
    machine had favoured leaving the reader a core; `workers` stays a parameter so that rule
    can come back if a measurement asks for it.
    """
    del workers  # the readers sleep on the queue most of the time: they get no core of their own
    return max(1, cpu_count if cpu_count is not None else (os.cpu_count() or 1))


@contextlib.contextmanager
def _torch_threads_for(device: torch.device, workers: int):
    """On the CPU, torch's intra-op threads = `cpu_torch_threads` (every core), for this run only
    (restored after); untouched on a GPU or when the user set OMP_NUM_THREADS."""
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(cpu_torch_threads(workers))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _count(result: InferenceResult, prediction: Prediction) -> None:
    result.n_predicted += 1
    result.n_pneumonia += int(bool(prediction.pneumonia))
    result.n_boxes += len(prediction.scores)
    result.n_unboxed_pneumonia += int(prediction.box_outcome == "no_box_above_score_thresh")


def _predict_shard(
    detector: Detector,
    shard: _Shard,
    writer: PartWriter,
    result: InferenceResult,
    *,
    progress: ProgressLog,
    on_image: Callable[[Prediction], None],
) -> None:
    todo, keys = [], {}
    for f in shard.files:
        key = InputKey.of(f)
        if key is not None and key in shard.scan.done_keys:
            result.n_skipped += 1
            continue
        todo.append(f)
        keys[str(f)] = key
    batch_size = detector.settings.batch_size
    pending = 0
    started = time.perf_counter()
    for prediction in detector.predict_many(todo, workers=result.workers, times=result.times):
        uid = prediction.header.sop_instance_uid if prediction.header is not None else None
        if uid and uid in shard.scan.done_uids:
            result.n_skipped += 1  # the same DICOM, moved or renamed since the stopped run
            continue
        writer.append(prediction.to_dict(anonymize=detector.settings.anonymize), keys.get(prediction.source), uid)
        pending += 1
        if prediction.error is not None:
            result.failures.append(BadFile(path=prediction.source, reason=prediction.error))
        else:
            _count(result, prediction)
            on_image(prediction)
        progress.update(failed=prediction.error is not None)
        if pending >= batch_size:
            writer.flush()
            pending = 0
    writer.flush()
    result.wall_s = time.perf_counter() - started


def _assemble(
    detector: Detector,
    listing: InputListing,
    info: DistInfo,
    out_path: Path,
    submission_path: Path | None,
    result: InferenceResult,
) -> None:
    """Rank 0: every part -> boxes.json (+ the submission), in the order of the listing."""
    parts = [part_path(out_path, r, info.world_size) for r in range(info.world_size)]
    head = {
        "schema_version": SCHEMA_VERSION,
        "model": detector.model_info,
        "gate_model": detector.gate.model_info if detector.gate is not None else None,
        "settings": settings_to_json(
            detector.settings.postprocess, detector.operating_points, detector.threshold_rule()
        ),
        "anonymized": detector.settings.anonymize,
    }
    n_entries, n_readable = count_entries(parts)
    if not n_readable:
        reasons = "; ".join(f"{f.path}: {f.reason}" for f in result.failures[:3])
        more = f" (and {len(result.failures) - 3} more)" if len(result.failures) > 3 else ""
        raise DetectError(f"none of the {n_entries} input file(s) could be read: {reasons}{more}")
    result.out_path, _ = write_boxes_json_stream(out_path, head, merge_entries(parts, listing.files))
    if submission_path is not None:
        rows, duplicates = submission_rows_from_entries(merge_entries(parts, listing.files))
        result.submission_path = write_submission(submission_path, rows)
        result.warnings += formula_warnings(rows)
        result.warnings += [
            f"{sid}: patientId appears more than once; only the first file's boxes are in the submission"
            for sid in duplicates
        ]


def run_inference(
    paths: Sequence[str | Path],
    *,
    out_path: str | Path,
    checkpoint: str | Path | None = None,
    settings: InferenceSettings | None = None,
    runs_dir: str | Path = "runs",
    gate_with: str | Path | None = None,
    progress: bool = False,
    resume: bool = False,
    glob: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
    log_every_images: int = LOG_EVERY_IMAGES,
    log_every_seconds: float = LOG_EVERY_SECONDS,
    **overrides: Any,
) -> InferenceResult:
    """Predict every file under `paths` into the JSON Lines part(s) next to `out_path`, then
    write boxes.json (+ the submission, overlays, Grad-CAM PNGs, DICOM SR / GSPS that `settings`
    ask for). See the module docstring.

    `settings`: an InferenceSettings (default: its defaults), changed by `overrides` (any of
    its fields by name, e.g. device="cpu", batch_size=1). `checkpoint` None: the newest
    runs/*/checkpoints/best.pt under `runs_dir`. `gate_with`: a checkpoint whose pneumonia
    probability gates and decides (detect.inference.gating).

    Raises DetectError (no boxes.json written) when a setting is bad, an output path cannot
    be written (OutputWriteError, found before anything is predicted), the checkpoint is
    missing or unreadable, --resume meets another run's settings, or not one file could be read;
    otherwise an unreadable file is an entry with "error" and a BadFile in `failures`.
    `progress`: a bar (for a TTY); otherwise `log` gets a line every N images or M seconds.
    An input that cannot have a DICOM SR / GSPS is a warning. With `settings.explain_dir`, the
    model that decides must be a classifier (DetectError before predicting).
    `settings.workers`: reader threads decoding ahead of the model (None:
    detect.data.files.default_read_workers: on a GPU one per core but one, at most 8; on the
    CPU 1; 0: read in the predicting thread). On the CPU torch keeps every core.
    """
    settings = (settings or InferenceSettings()).replace(**overrides)
    check_output_targets(out_path, settings.submission_path, settings.overlay_dir, settings.explain_dir)
    info = dist_info_from_env()
    torch_device = resolve_device(settings.device, local_rank=info.local_rank, what="--device")
    settings = settings.replace(device=str(torch_device))
    owns_group = info.is_distributed and not torch.distributed.is_initialized()
    init_distributed(torch_device, info)
    try:
        listing = collect_input_files(paths, glob)
        detector = Detector.from_checkpoint(checkpoint, settings, runs_dir=runs_dir, gate_with=gate_with)
        explainer = explainer_for(detector) if settings.explain_dir is not None else None
        out = Path(out_path)
        shard, writer = _open_shard(listing, out, info, resume, run_fingerprint(detector), log)
        result = InferenceResult(
            out_path=None,
            part_paths=[shard.part],
            n_inputs=len(listing.files),
            problems=list(listing.problems),
            rank=info.rank,
            workers=default_read_workers(torch_device.type) if settings.workers is None else settings.workers,
        )
        root = settings.overlay_dir
        names = overlay_names(listing.files) if root is not None else {}
        result.overlay_dir = root
        explain_root = settings.explain_dir
        explain_names = overlay_names(listing.files, "_gradcam") if explain_root is not None else {}
        result.explain_dir = explain_root

        sr_dir, gsps_dir = settings.dicom_sr_dir, settings.dicom_gsps_dir
        dicom_writer = DicomResultWriter(
            algorithm_info(detector) if sr_dir or gsps_dir else None,
            sr_dir=sr_dir,
            gsps_dir=gsps_dir,
            anonymize=settings.anonymize,
        )

        def each_image(prediction: Prediction) -> None:
            pixels = prediction.image
            if root is not None:
                write_overlay(root / names[prediction.source], prediction.plot())
                result.n_overlays += 1
            if explainer is not None and explain_root is not None and pixels is not None:
                (canvas,) = explanation_overlays(explainer, detector, [prediction])
                write_overlay(explain_root / explain_names[prediction.source], canvas)
                result.n_explained += 1
            dicom_writer.write(prediction.header, prediction.as_record())

        log_progress = ProgressLog(
            len(shard.files), log, tty=progress, desc="infer", every=log_every_images, every_seconds=log_every_seconds
        )
        try:
            with _torch_threads_for(torch_device, result.workers):
                result.torch_threads = torch.get_num_threads()
                _predict_shard(detector, shard, writer, result, progress=log_progress, on_image=each_image)
        finally:
            writer.close()
            log_progress.close()
        if result.times.n_images:
            log(result.pipeline_line())
        barrier()
        if info.is_main:
            _assemble(detector, listing, info, out, settings.submission_path, result)
        result.dicom_paths = list(dicom_writer.written)
        result.warnings += dicom_writer.problems
        barrier()
        return result
    finally:
        if owns_group:
            torch.distributed.destroy_process_group()
