"""`detect`: the command line. Parses arguments, calls one function, prints, sets the exit code.

No ML logic lives here. Heavy modules (torch) are imported inside the commands so that
`detect --help` and `detect synth` stay fast: the one place in the project that imports late. Every user-facing error is a `DetectError`:
it is printed as one line `error: <file or key>: <problem>` and the exit code is 2.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from data_prep.errors import DetectError, printable

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Chest X-ray pneumonia detection: RSNA/Kermany ingestion, Faster R-CNN opacity boxes, exact metrics.",
    pretty_exceptions_enable=False,
    # plain help: rich markup would eat "[a,b]" and show every flag as taking a <bool> value
    rich_markup_mode=None,
)


def print_version(value: bool) -> None:
    """--version: the installed package's version (no torch import)."""
    if value:
        from detect._version import __version__

        typer.echo(f"detect {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Chest X-ray pneumonia detection: RSNA/Kermany ingestion, Faster R-CNN opacity boxes, exact metrics."""


synth_app = typer.Typer(
    no_args_is_help=True, help="Write synthetic datasets in the real Kaggle layouts.", rich_markup_mode=None
)
app.add_typer(synth_app, name="synth")

F = TypeVar("F", bound=Callable[..., object])


def echo_problem(kind: str, text: str) -> None:
    """One 'error: ...' / 'warning: ...' / 'note: ...' line on stderr; control characters in
    `text` (a newline in a file name) are escaped, so each problem stays on its own line."""
    typer.echo(f"{kind}: {printable(text)}", err=True)


def user_errors_exit_2(func: F) -> F:
    """Turn a DetectError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except DetectError as exc:
            echo_problem("error", str(exc))
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors_exit_2
def prepare(
    data_dir: Path = typer.Argument(
        ...,
        help="Dataset root as unzipped from Kaggle (RSNA folder, or the folder holding chest_xray/), a folder of your own images with their labels (see --labels), or a prepared folder (with --export-coco).",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Where to write the manifest; default DATA_DIR/detect_prepared."
    ),
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Also write a cache of images resized for training."),
    image_size_px: int = typer.Option(
        512, "--image-size", help="Cache image size in pixels (square, aspect kept, padded)."
    ),
    val_fraction: float = typer.Option(0.1, help="Fraction of patients in the validation split."),
    test_fraction: float = typer.Option(0.1, help="Fraction of patients in the held-out test split."),
    seed: int = typer.Option(0, help="Split seed (splits are deterministic given the seed)."),
    workers: int = typer.Option(2, help="Processes used to read files."),
    max_megapixels: float = typer.Option(
        100.0,
        "--max-megapixels",
        help="Refuse (as a bad file) any image larger than this, checked from its header before decoding.",
    ),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="Your own images' labels: a COCO .json or a .csv (path,label[,x,y,width,height][,patient_id][,split]); default DATA_DIR's annotations.json or labels.csv.",
    ),
    label_map: Optional[str] = typer.Option(
        None,
        "--label-map",
        help="Your label names -> opacity | normal | abnormal, e.g. 'consolidation=opacity,clear=normal'.",
    ),
    unannotated: Optional[str] = typer.Option(
        None,
        "--unannotated",
        help="normal: an image the labels list without any annotation is normal (default: left out, reported).",
    ),
    export_coco: Optional[Path] = typer.Option(
        None,
        "--export-coco",
        help="Also write the prepared dataset (RSNA, Kermany or your own) as COCO JSON to this file.",
    ),
) -> None:
    """Detect the dataset kind, validate every file, write manifest + splits (+ cache), print a summary."""
    from data_prep.codestreams import megapixels_to_pixels
    from data_prep.prepare import export_prepared_coco, format_summary, prepare_dataset

    if export_coco is not None and labels is None and label_map is None and not cache:
        written = export_prepared_coco(data_dir, export_coco)  # a prepared folder is exported as it is
        if written is not None:
            typer.echo(f"wrote {written}")
            return
    result = prepare_dataset(
        data_dir,
        out_dir=out,
        cache=cache,
        image_size_px=image_size_px,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        workers=workers,
        max_pixels=megapixels_to_pixels(max_megapixels),
        labels=labels,
        label_map=label_map,
        unannotated=unannotated,
    )
    typer.echo(format_summary(result))
    if export_coco is not None:
        typer.echo(f"wrote {export_prepared_coco(result.prepared_dir, export_coco)}")


@app.command()
@user_errors_exit_2
def eda(
    data_dir: Optional[Path] = typer.Argument(
        None,
        help="RSNA or Kermany root as unzipped from Kaggle, or a prepared folder (prepared on the fly if it has no manifest).",
    ),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="stage_2_train_labels.csv: the report from the tables alone, no image read (instead of DATA_DIR).",
    ),
    class_info: Optional[Path] = typer.Option(
        None, "--class-info", help="With --labels: stage_2_detailed_class_info.csv, for the three RSNA classes."
    ),
    headers: Optional[Path] = typer.Option(
        None,
        "--headers",
        help="With --labels: a DICOM header table, one row per image (PatientID, PatientAge, PatientSex, ViewPosition, PixelSpacing), CSV or .csv.gz.",
    ),
    out: Path = typer.Option(Path("eda"), "--out", help="Report folder: report.md, report.html, eda.json, the plots."),
    images_per_class: int = typer.Option(
        48,
        "--images-per-class",
        help="With DATA_DIR: sampled images per class for the image grid and the intensity histograms.",
    ),
    image_size_px: Optional[int] = typer.Option(
        None,
        "--image-size",
        help="With DATA_DIR: cache size the sample is read at; default the prepared cache's, else 512.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the image sample."),
    workers: int = typer.Option(2, "--workers", help="Processes used to read files."),
) -> None:
    """Exploratory analysis: class balance, age, sex, view, boxes, where opacities sit, images, data quality, splits.

    Writes report.md, a self-contained report.html, eda.json (every number shown) and the plots.
    """
    from detect.eda.run import check_eda_arguments, format_eda_summary, run_eda_tables

    check_eda_arguments(data_dir, labels, class_info, headers)
    if labels is not None:
        result = run_eda_tables(out, labels, class_info=class_info, headers=headers)
    else:
        from detect.eda.folder import run_eda_folder  # imports `detect prepare` and the image cache

        result = run_eda_folder(
            out,
            data_dir,
            images_per_class=images_per_class,
            image_size_px=image_size_px,
            seed=seed,
            workers=workers,
            log=typer.echo,
        )
    for note in result.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(format_eda_summary(result))


@app.command()
@user_errors_exit_2
def train(
    config: Optional[Path] = typer.Option(
        None, "--config", help="Recipe YAML (configs/*.yaml). With --resume it defaults to RUN_DIR/config.yaml."
    ),
    data: Optional[list[Path]] = typer.Option(
        None,
        "--data",
        help="Dataset root as unzipped from Kaggle, or a prepared folder; repeat it to train on RSNA and Kermany together. Prepared on the fly when it has no manifest. With --resume it defaults to the run's own data.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder; default runs/<config name>."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from RUN_DIR/checkpoints/last.pt: same config (train.epochs may grow), same schedule.",
    ),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config key, e.g. --set train.lr=0.01 (repeatable)."
    ),
    print_config: bool = typer.Option(
        False,
        "--print-config",
        help="Print the resolved config (values that differ from the defaults marked) and exit without training.",
    ),
    device: Optional[str] = typer.Option(
        None, "--device", help="auto | cpu | cuda | cuda:N: a shortcut for --set train.device=..."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="A shortcut for --set train.epochs=N."),
) -> None:
    """Train the Faster R-CNN + image classifier, or a whole-image classifier (model.name=resnet18 ...
    with task=kermany2|kermany3|rsna2|rsna3); writes config.yaml, metrics.csv, checkpoints/{best,last}.pt.

    Several GPUs: torchrun --nproc_per_node=N cli.py train ... (DDP; rank 0 logs and saves).
    """
    from detect.config_format import format_config
    from detect.training.trainer import format_result, resolve_config, run_training

    overrides = [
        *(overrides or []),
        *([f"train.device={device}"] if device is not None else []),
        *([f"train.epochs={epochs}"] if epochs is not None else []),
    ]
    if print_config:
        typer.echo(format_config(resolve_config(config, overrides, out)), nl=False)
        return
    result = run_training(config, data or [], out_dir=out, resume=resume, overrides=overrides, log=typer.echo)
    if result.rank == 0:
        typer.echo(format_result(result))


@synth_app.command("rsna")
@user_errors_exit_2
def synth_rsna_command(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write (stage_2_train_labels.csv, stage_2_train_images/, ...)."
    ),
    images: int = typer.Option(200, "--images", help="Number of training images (one patient each)."),
    test_images: int = typer.Option(0, "--test-images", help="Number of unlabeled stage_2_test_images."),
    size_px: int = typer.Option(1024, "--image-size", help="Image size in pixels (the real data is 1024)."),
    size_alias: Optional[int] = typer.Option(None, "--size", hidden=True, help="Old name of --image-size."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data: the same seed writes the same bytes."),
    workers: int = typer.Option(1, "--workers", help="Processes rendering images (same files for any number)."),
    jpeg_quality: int = typer.Option(
        95,
        "--jpeg-quality",
        help="JPEG quality of the frames (1-100): 95 gives ~2x the real file size, 87 the real RSNA size (~130-150 KB at 1024 px).",
    ),
) -> None:
    """Synthetic RSNA: JPEG-Baseline DICOMs with the real header, both CSVs with their real quirks."""
    from data_prep.synth import synth_rsna

    size_px = size_alias if size_alias is not None else size_px
    summary = synth_rsna(
        out,
        n_images=images,
        n_test_images=test_images,
        size_px=size_px,
        seed=seed,
        workers=workers,
        jpeg_quality=jpeg_quality,
    )
    typer.echo(str(summary))


@synth_app.command("kermany")
@user_errors_exit_2
def synth_kermany_command(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write; the images go to OUT/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}."
    ),
    images: int = typer.Option(120, "--images", help="Total number of images over all splits."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic data: the same seed writes the same bytes."),
    difficulty: float = typer.Option(
        1.0,
        "--difficulty",
        help="0..1: 0 clear textbook findings; 1 subtle, variable findings among label-free variation (about the real set's difficulty).",
    ),
    size_range_px: tuple[int, int] = typer.Option(
        (384, 640), "--size-range", help="Smallest and largest image side, px."
    ),
) -> None:
    """Synthetic Kermany: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} with the real file naming."""
    from data_prep.synth import synth_kermany

    summary = synth_kermany(out, n_images=images, seed=seed, size_range_px=size_range_px, difficulty=difficulty)
    typer.echo(str(summary))


@app.command()
@user_errors_exit_2
def infer(
    paths: Optional[list[Path]] = typer.Argument(
        None,
        help="DICOM / PNG / JPEG files or folders (searched recursively; files without a known suffix are taken by content); none with --dicomweb.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="boxes.json to write (schema: detect/outputs/schemas/boxes.schema.json); the JSON Lines part(s) go next to it.",
    ),
    checkpoint: Optional[Path] = typer.Option(
        None,
        "--checkpoint",
        help="Default: the best checkpoint most recently written under ./runs (runs/*/checkpoints/best.pt). Also a file of `detect export` (.onnx, TorchScript, weights-only .pt).",
    ),
    backend: Optional[str] = typer.Option(
        None,
        "--backend",
        help="eager (PyTorch) | torchscript | onnxruntime; default: what --checkpoint is (an .onnx file: onnxruntime).",
    ),
    submission: Optional[Path] = typer.Option(
        None, "--submission", help="Also write a Kaggle submission CSV (patientId,PredictionString)."
    ),
    overlay: Optional[Path] = typer.Option(
        None, "--overlay", help="Also write one PNG per image with boxes and probabilities drawn."
    ),
    gate_with: Optional[Path] = typer.Option(
        None,
        "--gate-with",
        help="A second checkpoint (e.g. a classifier) whose pneumonia probability replaces the detector's own and decides, at its own stored thresholds.",
    ),
    explain: Optional[Path] = typer.Option(
        None,
        "--explain",
        help="Also write DIR/<image stem>_gradcam.png per image: the Grad-CAM heat map of the pneumonia score of the classifier that decides.",
    ),
    score_thresh: float = typer.Option(
        0.3, "--score-thresh", help="Drop boxes whose final score (after gating) is below this."
    ),
    gate: bool = typer.Option(
        True, "--gate/--no-gate", help="Multiply box scores by the image's pneumonia probability."
    ),
    drop_below_threshold: bool = typer.Option(
        True,
        "--drop-below-threshold/--keep-below-threshold",
        help="With --gate: no boxes on images whose pneumonia probability is below the decision threshold.",
    ),
    shrink: float = typer.Option(
        0.875, "--shrink", help="Scale box width/height about the centre by this factor (1.0 = off)."
    ),
    tta: bool = typer.Option(
        False, "--tta/--no-tta", help="Horizontal-flip test-time augmentation (boxes merged by weighted box fusion)."
    ),
    tta_merge: str = typer.Option(
        "wbf",
        "--tta-merge",
        help="With --tta: how the two views' boxes become one set: wbf (weighted box fusion) | nms.",
    ),
    tta_iou: float = typer.Option(
        0.55, "--tta-iou", help="With --tta: boxes of the two views overlapping more than this IoU are one box."
    ),
    pneumonia_threshold: Optional[float] = typer.Option(
        None,
        "--pneumonia-threshold",
        help="Decision threshold for every image; default: the checkpoint's, chosen on the val split of the image's dataset.",
    ),
    threshold_from: Optional[str] = typer.Option(
        None,
        "--threshold-from",
        help="rsna | kermany | custom: use that dataset's stored threshold for every image (default: DICOM -> rsna, PNG/JPEG -> kermany; a model trained on one dataset: its own).",
    ),
    batch_size: int = typer.Option(
        8, "--batch-size", help="Images per forward pass (and per flush of the JSON Lines part)."
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        help="Threads reading (decoding) the next batches while the model runs; default: one per CPU core but one, at most 8; 0: read in turn, no overlap.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", hidden=True, help="Old name of --threads."),
    device: str = typer.Option(
        "auto", "--device", help="auto (GPU when present) | cpu | cuda | cuda:N; under torchrun, each rank its own GPU."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a stopped run: skip the images its JSON Lines part already holds (same checkpoint and options required).",
    ),
    glob: Optional[str] = typer.Option(
        None, "--glob", help="Only files whose path below the folder matches this pattern, e.g. '**/*.dcm' or 'CT*/**'."
    ),
    allow_failures: bool = typer.Option(
        False,
        "--allow-failures",
        help="Exit 0 even when some files could not be read (they are listed in boxes.json either way).",
    ),
    log_every: int = typer.Option(
        500, "--log-every", help="Without a terminal: a progress line every N images (and every 30 s)."
    ),
    dicom_sr: Optional[Path] = typer.Option(
        None,
        "--dicom-sr",
        help="Also write one DICOM SR (TID 1500 measurement report) per DICOM input into this folder.",
    ),
    dicom_gsps: Optional[Path] = typer.Option(
        None,
        "--dicom-gsps",
        help="Also write one DICOM presentation state (boxes drawn over the image) per DICOM input into this folder.",
    ),
    anonymize: bool = typer.Option(
        False, "--anonymize", help="No patient ID in boxes.json; no patient ID, name or birth date in the SR / GSPS."
    ),
    dicomweb: Optional[str] = typer.Option(
        None,
        "--dicomweb",
        help="DICOMweb root URL (e.g. http://pacs:8042/dicom-web): fetch --study with WADO-RS instead of reading PATHS.",
    ),
    study: Optional[str] = typer.Option(None, "--study", help="With --dicomweb: the Study Instance UID to fetch."),
    stow: bool = typer.Option(
        False, "--stow", help="With --dicomweb: store the SR and GSPS back into the study with STOW-RS."
    ),
    dicomweb_follow_redirects: bool = typer.Option(
        False,
        "--dicomweb-follow-redirects",
        help="With --dicomweb: follow a redirect to another host "
        "(refused by default: it would take the request elsewhere).",
    ),
    max_megapixels: float = typer.Option(
        100.0,
        "--max-megapixels",
        help="Report (and skip) any image larger than this, checked from its header before decoding.",
    ),
) -> None:
    """Predict pneumonia and opacity boxes (ORIGINAL pixel coordinates) for images; write boxes.json (+ DICOM SR / GSPS, PACS round trip).

    Exit 0 when every file was predicted; 2 when some could not be read (unless --allow-failures) or on a user error.
    Several processes or machines: torchrun --nproc_per_node=N cli.py infer ... (each rank a share, rank 0 merges).
    """
    from detect.inference.batch import run_inference
    from detect.inference.settings import InferenceSettings

    settings = InferenceSettings(
        score_thresh=score_thresh,
        gate=gate,
        drop_below_threshold=drop_below_threshold,
        shrink_factor=shrink,
        tta=tta,
        tta_merge=tta_merge,
        tta_iou_thresh=tta_iou,
        pneumonia_threshold=pneumonia_threshold,
        threshold_from=threshold_from,
        backend=backend,
        device=device,
        batch_size=batch_size,
        workers=threads if threads is not None else workers,
        max_megapixels=max_megapixels,
        anonymize=anonymize,
        submission_path=submission,
        overlay_dir=overlay,
        dicom_sr_dir=dicom_sr,
        dicom_gsps_dir=dicom_gsps,
        explain_dir=explain,
    )
    run_options = dict(
        checkpoint=checkpoint,
        gate_with=gate_with,
        settings=settings,
        progress=sys.stderr.isatty(),
        resume=resume,
        glob=glob,
        log=lambda line: typer.echo(line, err=True),
        log_every_images=log_every,
    )
    if dicomweb is not None:
        from detect.inference.dicomweb_infer import run_dicomweb_inference
        from detect.pacs.dicomweb import DicomWebLimits

        if paths:
            raise DetectError("give either PATHS or --dicomweb URL --study UID, not both")
        remote = run_dicomweb_inference(
            dicomweb,
            study or "",
            out_path=out,
            stow=stow,
            limits=DicomWebLimits(follow_other_hosts=dicomweb_follow_redirects),
            **run_options,
        )
        result = remote.inference
    else:
        if study is not None or stow or dicomweb_follow_redirects:
            raise DetectError("--study, --stow and --dicomweb-follow-redirects go with --dicomweb URL")
        result = run_inference(paths or [], out_path=out, **run_options)
    for problem in result.problems:
        echo_problem("warning", problem)
    for failure in result.failures:
        echo_problem("warning", f"{failure.path}: {failure.reason}")
    for warning in result.warnings:
        echo_problem("warning", warning)
    if result.rank == 0:
        typer.echo(remote.summary() if dicomweb is not None else result.summary())
    if result.failures and not allow_failures:
        raise DetectError(
            f"{len(result.failures)} of {result.n_inputs} file(s) could not be read (listed in "
            f"{result.out_path or out} with their reason); pass --allow-failures to accept that"
        )


@app.command("export")
@user_errors_exit_2
def export_command(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A best.pt / last.pt of `detect train`."),
    export_format: str = typer.Option(
        "onnx",
        "--format",
        help="onnx (ONNX Runtime) | torchscript (torch.jit) | weights (a checkpoint without optimizer state).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="File to write; default beside the checkpoint: best.onnx, best.torchscript.pt or best.weights.pt.",
    ),
) -> None:
    """Export a checkpoint for deployment: boxes in original pixels, scores and image probabilities as fixed tensors.

    `detect infer --checkpoint FILE` runs the result (an .onnx file in ONNX Runtime); the contract: docs/usage.md (detect export).
    """
    from detect.export.run import export_checkpoint

    typer.echo(export_checkpoint(checkpoint, export_format, out).summary())


@app.command("eval")
@user_errors_exit_2
def eval_command(
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json, report.md and the plots."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Default: the best checkpoint most recently written under ./runs."
    ),
    gate_with: Optional[Path] = typer.Option(
        None, "--gate-with", help="Score the checkpoint gated by this one, as `detect infer --gate-with`."
    ),
    data: Optional[list[Path]] = typer.Option(
        None,
        "--data",
        help="Dataset folder (RSNA, Kermany, or your images with annotations.json / labels.csv; prepared on the fly if needed); repeat for several.",
    ),
    predictions: Optional[Path] = typer.Option(
        None,
        "--predictions",
        help="A Kaggle submission CSV, or a boxes.json of `detect infer`, to score instead of a checkpoint.",
    ),
    labels: Optional[Path] = typer.Option(
        None,
        "--labels",
        help="With --predictions: stage_2_train_labels.csv (for a CSV), or your COCO .json / label CSV (for a boxes.json; paths relative to its folder).",
    ),
    label_map: Optional[str] = typer.Option(
        None, "--label-map", help="Your label names -> opacity | normal | abnormal, as in `detect prepare`."
    ),
    unannotated: Optional[str] = typer.Option(
        None, "--unannotated", help="normal: a labelled image without annotation is normal, as in `detect prepare`."
    ),
    split: str = typer.Option(
        "test", "--split", help="Held-out split to score, at the thresholds training chose on each dataset's val split."
    ),
    score_thresh: float = typer.Option(0.3, "--score-thresh", help="As in `detect infer`."),
    gate: bool = typer.Option(True, "--gate/--no-gate", help="As in `detect infer`."),
    drop_below_threshold: bool = typer.Option(
        True, "--drop-below-threshold/--keep-below-threshold", help="As in `detect infer`."
    ),
    shrink: float = typer.Option(0.875, "--shrink", help="As in `detect infer`."),
    tta: bool = typer.Option(False, "--tta/--no-tta", help="As in `detect infer`."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per forward pass, as in `detect infer`."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present) | cpu | cuda | cuda:N."),
) -> None:
    """Exact metrics (RSNA score, COCO mAP, classification) on held-out patients, or of a submission CSV."""
    from detect.evaluation.evaluate import evaluate_checkpoint
    from detect.evaluation.report import format_summary
    from detect.evaluation.submission_eval import evaluate_predictions
    from detect.inference.settings import InferenceSettings

    if predictions is not None or labels is not None:
        if predictions is None or labels is None or data or checkpoint is not None or gate_with is not None:
            raise DetectError(
                "use either --predictions CSV|boxes.json --labels FILE, or [--checkpoint CKPT] [--gate-with CKPT] --data DIR"
            )
        if predictions.suffix.lower() == ".json":
            from detect.evaluation.boxes_eval import evaluate_boxes_json

            outcome = evaluate_boxes_json(predictions, labels, out, label_map=label_map, unannotated=unannotated)
        else:
            outcome = evaluate_predictions(predictions, labels, out)
    else:
        if not data:
            raise DetectError("pass --data DIR (with an optional --checkpoint), or --predictions CSV --labels CSV")
        # The same checked record as `detect infer` (its post-processing, batch size and device).
        settings = InferenceSettings(
            score_thresh=score_thresh,
            gate=gate,
            drop_below_threshold=drop_below_threshold,
            shrink_factor=shrink,
            tta=tta,
            batch_size=batch_size,
            device=device,
        )
        outcome = evaluate_checkpoint(
            checkpoint,
            data,
            out,
            split=split,
            settings=settings.postprocess,
            batch_size=settings.batch_size,
            device=settings.device,
            progress=sys.stderr.isatty(),
            gate_with=gate_with,
            label_map=label_map,
            unannotated=unannotated,
            log=lambda line: typer.echo(line, err=True),
        )
    for note in outcome.notes:
        echo_problem("note", note)
    typer.echo(format_summary(outcome.metrics))
    typer.echo(f"wrote {', '.join(str(p) for p in outcome.paths.values())}")


@app.command()
@user_errors_exit_2
def compare(
    models: str = typer.Option(
        ...,
        "--models",
        help="Comma-separated model names (detectors and classifiers of the registry), each optionally NAME:WEIGHTS (none, imagenet, xrv:NAME or a file) to compare starting weights, e.g. efficientnet_lite0:imagenet,efficientnet_lite0:none,basic_cnn.",
    ),
    config: Path = typer.Option(
        ...,
        "--config",
        help="The recipe every model trains with (only model.name changes, model.weights where a row names them, and the task a classifier needs).",
    ),
    data: Optional[list[Path]] = typer.Option(
        None,
        "--data",
        help="Dataset root or prepared folder (repeatable); the test split (Kermany: its own test/; RSNA: held-out patients) is what the models are compared on.",
    ),
    out: Path = typer.Option(
        Path("compare"), "--out", help="Folder for compare.csv, report.md, the plots, and runs/<model>/."
    ),
    epochs: Optional[int] = typer.Option(
        None, "--epochs", help="Budget: train.epochs for every model (default: the recipe's)."
    ),
    minutes_per_model: Optional[float] = typer.Option(
        None,
        "--minutes-per-model",
        help="Budget: each model stops at the end of the epoch in which this many minutes ran out (train.max_minutes; train.epochs stays the upper bound).",
    ),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config key for every model, e.g. --set train.lr=0.01 (repeatable)."
    ),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", help="Bootstrap resamples of the test images for the 95% intervals."
    ),
) -> None:
    """Train several models on the same splits, seed and budget; compare them on held-out patients.

    Writes OUT/compare.csv (one row per model), OUT/report.md (metrics with 95% bootstrap
    intervals, DeLong and McNemar tests of the best model against each other, cost), ROC curves,
    confusion matrices and accuracy against inference time. Resumable: a finished model is not
    trained again; a killed one resumes from its last epoch.
    """
    from detect.compare.plan import parse_model_list
    from detect.compare.run import run_compare

    if bootstrap < 1:
        raise DetectError(f"--bootstrap must be >= 1, got {bootstrap}")
    names = parse_model_list(models)
    outcome = run_compare(
        names,
        config,
        data or [],
        out,
        overrides=overrides or [],
        epochs=epochs,
        minutes_per_model=minutes_per_model,
        n_resamples=bootstrap,
        log=typer.echo,
    )
    if outcome.best_model:
        typer.echo(f"best test ROC-AUC: {outcome.best_model}")
    typer.echo(f"wrote {', '.join(str(p) for p in outcome.paths.values())}")


@app.command()
@user_errors_exit_2
def sweep(
    config: Path = typer.Option(..., "--config", help="The recipe each combination starts from."),
    data: Optional[list[Path]] = typer.Option(
        None, "--data", help="Dataset root or prepared folder (repeatable), as in `detect train`."
    ),
    grid: Optional[list[str]] = typer.Option(
        None,
        "--grid",
        help="A config key and its values, e.g. --grid train.lr=0.01,0.02 (repeatable; every combination is trained). Values typed as --set types them; [a,b] for lists.",
    ),
    out: Path = typer.Option(
        Path("sweep"), "--out", help="Folder for sweep.csv, report.md, by_key.png and runs/<combination>/."
    ),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config key for every run (repeatable)."
    ),
    metric: Optional[str] = typer.Option(
        None,
        "--metric",
        help="Validation metric the report compares, e.g. val_f1 (default: the recipe's train.monitor).",
    ),
) -> None:
    """Train one run per combination of --grid values (detectors and classifiers alike); tabulate and compare them.

    Writes OUT/sweep.csv (every run's final and best validation metrics), OUT/report.md (each key's
    values: mean and spread over the other keys, a plot, observations computed from the numbers).
    Resumable: a finished run is not trained again; a killed one resumes from its last epoch.
    """
    from detect.sweep.run import run_sweep

    outcome = run_sweep(config, data or [], grid or [], out, overrides=overrides or [], metric=metric, log=typer.echo)
    typer.echo(
        f"{len(outcome.results)} runs ({len(outcome.trained)} trained now); wrote "
        f"{', '.join(str(p) for p in outcome.paths.values())}"
    )


@app.command()
@user_errors_exit_2
def demo(
    out: Path = typer.Option(
        Path("demo_out"), "--out", help="Folder for everything the demo writes (data, run, eval, boxes.json)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="CI size: a fraction of the data and a few training steps (checks the path, not the accuracy).",
    ),
    config: Optional[Path] = typer.Option(None, "--config", help="Recipe to train; default configs/demo.yaml."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a config key, e.g. --set train.epochs=2 (repeatable)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic datasets."),
) -> None:
    """Synthesize RSNA + Kermany data, prepare, train the CPU recipe, evaluate held-out patients, infer one DICOM."""
    from detect.demo import format_demo_summary, run_demo

    result = run_demo(
        out, size="quick" if quick else "full", config=config, overrides=overrides or [], seed=seed, log=typer.echo
    )
    typer.echo(format_demo_summary(result))


@app.command()
@user_errors_exit_2
def serve(
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Default: the best checkpoint most recently written under ./runs."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; the default (loopback) is reachable from the same host only."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port (0: any free one)."),
    threads: int = typer.Option(
        1,
        "--threads",
        help="Inference threads, each running batches (read, model, finalize) on the one loaded model; "
        "one forward pass at a time.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", hidden=True, help="Old name of --threads."),
    max_wait_s: float = typer.Option(
        10.0,
        "--max-wait-s",
        help="Queue a request while its expected wait (queued x recent seconds per request / threads) "
        "is at most this; past it, 503 with Retry-After.",
    ),
    queue_size: int = typer.Option(
        256,
        "--queue-size",
        help="Most requests queued, whatever the expected wait (a memory cap); more get 503 with Retry-After.",
    ),
    max_batch: int = typer.Option(8, "--max-batch", help="Most images in one forward pass (1: no batching)."),
    batch_window_ms: float = typer.Option(
        5.0, "--batch-window-ms", help="How long a batch waits for more requests after its first one arrived."
    ),
    max_upload_mb: float = typer.Option(32.0, "--max-upload-mb", help="Largest upload in MiB (413 above)."),
    max_image_megapixels: float = typer.Option(
        64.0, "--max-image-megapixels", help="Largest declared image size (422 above), checked before decoding."
    ),
    token: Optional[str] = typer.Option(
        None,
        "--token",
        envvar="DETECT_SERVE_TOKEN",
        show_envvar=True,
        help="Require Authorization: Bearer TOKEN on /v1/* (401 without). Prefer the "
        "DETECT_SERVE_TOKEN environment variable: a --token on the "
        "command line is visible to every user in `ps`.",
    ),
    header_timeout: float = typer.Option(
        10.0,
        "--header-timeout",
        help="Seconds a client has to send a request's headers; slower connections are closed (408).",
    ),
    max_connections: int = typer.Option(
        256, "--max-connections", help="Open connections at most; more are closed at once."
    ),
    cors_origin: Optional[list[str]] = typer.Option(
        None, "--cors-origin", help="Allow this browser origin (repeatable); default: no CORS."
    ),
    score_thresh: float = typer.Option(
        0.3, "--score-thresh", help="Default of the request's score_thresh, as in `detect infer`."
    ),
    tta: bool = typer.Option(False, "--tta/--no-tta", help="Default of the request's tta, as in `detect infer`."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present) | cpu | cuda | cuda:N."),
) -> None:
    """Serve the model: REST API (POST /v1/predict, GET /v1/model, /healthz, /readyz, /docs) and a viewer at /."""
    from detect.inference.settings import InferenceSettings
    from detect.serve.server import run_server
    from detect.serve.settings import ServeSettings

    settings = ServeSettings(
        host=host,
        port=port,
        workers=workers if workers is not None else threads,
        queue_size=queue_size,
        max_wait_s=max_wait_s,
        max_batch=max_batch,
        batch_window_ms=batch_window_ms,
        max_upload_mb=max_upload_mb,
        max_image_megapixels=max_image_megapixels,
        token=token or None,
        cors_origins=tuple(cors_origin or ()),
        header_timeout_s=header_timeout,
        max_connections=max_connections,
        inference=InferenceSettings(score_thresh=score_thresh, tta=tta, device=device),
    )
    run_server(checkpoint, settings, echo=typer.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
