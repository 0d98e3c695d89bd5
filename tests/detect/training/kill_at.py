"""Test-only: run `detect train` and SIGKILL it at one chosen instant of an epoch's end.

    python -m tests.detect.training.kill_at INSTANT EPOCH train --config ... --out RUN_DIR

INSTANT is one of:
    after_csv    metrics.csv holds the epoch's row; its last.pt is not written yet
    mid_last     inside the write of the epoch's last.pt: half of it is in the temporary file
    after_last   last.pt is written; best.pt is not copied yet (the epoch must improve)
    after_best   best.pt is copied

The instants are reached by wrapping the functions the trainer calls at an epoch's end
(RunWriter.write_epoch, save_checkpoint, copy_file_atomic), so the production code carries no
test hook. SIGKILL, unlike an exception, runs no `finally` and no cleanup: what the killed
process leaves is what a power cut or the OOM killer would leave. When the instant is never
reached the run ends normally (exit 0), which the test treats as a failure.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from cli import app
from detect.training import trainer
from detect.training.run_folder import RunWriter

INSTANTS = ("after_csv", "mid_last", "after_last", "after_best")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(instant: str, epoch: int) -> None:
    """Wrap the trainer's epoch-end functions so that the process dies at (`instant`, `epoch`)."""
    if instant not in INSTANTS:
        raise SystemExit(f"unknown instant {instant!r}; choose one of {', '.join(INSTANTS)}")
    saved_epochs: list[int] = []
    real_write_epoch, real_save, real_copy = RunWriter.write_epoch, trainer.save_checkpoint, trainer.copy_file_atomic

    def write_epoch(self: RunWriter, at_epoch: int, *args: Any, **kwargs: Any) -> dict[str, Any]:
        row = real_write_epoch(self, at_epoch, *args, **kwargs)
        if instant == "after_csv" and at_epoch == epoch:
            _die()
        return row

    def save_checkpoint(path: Path, **kwargs: Any) -> Path:
        if instant == "mid_last" and kwargs["epoch"] == epoch:

            def half_then_die(payload: Any, handle: Any) -> None:
                handle.write(b"PK\x03\x04" + bytes(1 << 20))
                handle.flush()
                _die()

            torch.save = half_then_die
        written = real_save(path, **kwargs)
        saved_epochs.append(kwargs["epoch"])
        if instant == "after_last" and kwargs["epoch"] == epoch:
            _die()
        return written

    def copy_file_atomic(source: Path, destination: Path) -> Path:
        copied = real_copy(source, destination)
        if instant == "after_best" and saved_epochs and saved_epochs[-1] == epoch:
            _die()
        return copied

    RunWriter.write_epoch = write_epoch  # type: ignore[method-assign]
    trainer.save_checkpoint = save_checkpoint
    trainer.copy_file_atomic = copy_file_atomic


def main(argv: list[str]) -> int:
    instant, epoch, *cli_args = argv
    install(instant, int(epoch))
    app(args=cli_args, prog_name="detect")  # raises SystemExit with the command's exit code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
