"""`detect`: the command line. Parses arguments, calls one function, prints, sets the exit code.

No ML logic lives here. Heavy modules (torch) are imported inside the commands so that
`detect --help` and `detect synth` stay fast. Every user-facing error is a `DetectError`:
it is printed as one line `error: <file or key>: <problem>` and the exit code is 2.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer

from data_prep.errors import DetectError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Chest X-ray pneumonia detection: RSNA/Kermany ingestion, Faster R-CNN opacity boxes, exact metrics.",
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(no_args_is_help=True, help="Write synthetic datasets in the real Kaggle layouts.")
app.add_typer(synth_app, name="synth")

F = TypeVar("F", bound=Callable[..., object])


def user_errors_exit_2(func: F) -> F:
    """Turn a DetectError into one line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except DetectError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors_exit_2
def prepare(
    data_dir: Path = typer.Argument(..., help="Dataset root as unzipped from Kaggle (RSNA folder, or the folder holding chest_xray/)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the manifest; default DATA_DIR/detect_prepared."),
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Also write a cache of images resized for training."),
    image_size_px: int = typer.Option(512, "--image-size", help="Cache image size in pixels (square, aspect kept, padded)."),
    val_fraction: float = typer.Option(0.1, help="Fraction of patients in the validation split."),
    test_fraction: float = typer.Option(0.1, help="Fraction of patients in the held-out test split."),
    seed: int = typer.Option(0, help="Split seed (splits are deterministic given the seed)."),
    workers: int = typer.Option(2, help="Processes used to read files."),
) -> None:
    """Detect the dataset kind, validate every file, write manifest + splits (+ cache), print a summary."""
    from data_prep.prepare import format_summary, prepare_dataset

    result = prepare_dataset(
        data_dir,
        out_dir=out,
        cache=cache,
        image_size_px=image_size_px,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        workers=workers,
    )
    typer.echo(format_summary(result))


@synth_app.command("rsna")
@user_errors_exit_2
def synth_rsna_command(
    out: Path = typer.Option(..., "--out", help="Folder to write (stage_2_train_labels.csv, stage_2_train_images/, ...)."),
    images: int = typer.Option(200, "--images", help="Number of training images (one patient each)."),
    test_images: int = typer.Option(0, "--test-images", help="Number of unlabeled stage_2_test_images."),
    size_px: int = typer.Option(1024, "--size", help="Image size in pixels (the real data is 1024)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Synthetic RSNA: JPEG-Baseline DICOMs with the real header, both CSVs with their real quirks."""
    from data_prep.synth import synth_rsna

    summary = synth_rsna(out, n_images=images, n_test_images=test_images, size_px=size_px, seed=seed)
    typer.echo(str(summary))


@synth_app.command("kermany")
@user_errors_exit_2
def synth_kermany_command(
    out: Path = typer.Option(..., "--out", help="Folder to write; the images go to OUT/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}."),
    images: int = typer.Option(120, "--images", help="Total number of images over all splits."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Synthetic Kermany: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} with the real file naming."""
    from data_prep.synth import synth_kermany

    summary = synth_kermany(out, n_images=images, seed=seed)
    typer.echo(str(summary))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
