"""What the synthetic-dataset writers share: the summary record and the output-folder guard."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import ConfigError

# Written into every synthetic dataset's root. It marks the folder as ours, so that a second run
# may replace it; a non-empty folder without it (a user's real download) is never touched.
MARKER_FILE = "SYNTHETIC_DATASET.json"


@dataclass(frozen=True)
class SynthSummary:
    """What a synthetic-dataset writer wrote: exact counts, for tests and for `prepare` to match.

    `counts` keys are documented by each writer (`synth_rsna`, `synth_kermany`); every value is
    an exact count of what is on disk. `elapsed_s` is wall time (not compared).
    """

    dataset: str  # 'rsna' or 'kermany'
    out_dir: str
    counts: dict[str, int]
    seed: int = 0
    elapsed_s: float = field(default=0.0, compare=False)

    @property
    def ms_per_image(self) -> float:
        n = self.counts.get("images", 0) + self.counts.get("test_images", 0)
        return 1000.0 * self.elapsed_s / n if n else 0.0

    def __str__(self) -> str:
        lines = [
            f"synthetic {self.dataset} dataset written to {self.out_dir} (seed {self.seed}, "
            f"{self.elapsed_s:.1f} s, {self.ms_per_image:.0f} ms/image)"
        ]
        width = max((len(k) for k in self.counts), default=0)
        lines += [f"  {k:<{width}}  {v}" for k, v in self.counts.items()]
        return "\n".join(lines)


def claim_output_dir(out_dir: str | Path, dataset: str, owned: tuple[str, ...], params: dict[str, Any]) -> Path:
    """Make `out_dir` ready for a fresh synthetic dataset and mark it as ours; return it as a Path.

    - missing or empty: created;
    - holds our marker: the entries named in `owned` (files or folders, relative) and the marker
      are removed, anything else is left alone;
    - anything else: ConfigError, nothing is touched (it may be a real download).
    The marker is written first, so an interrupted run can be repeated.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose a new or empty folder for the synthetic dataset")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER_FILE
        if not marker.is_file():
            raise ConfigError(
                f"{out}: folder is not empty and has no {MARKER_FILE} (not written by `detect synth`); "
                "refusing to overwrite it, choose a new or empty folder"
            )
        for name in owned:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, dataset, params, counts=None)
    return out


def write_marker(out: Path, dataset: str, params: dict[str, Any], counts: dict[str, int] | None) -> None:
    """The provenance file: generator, parameters and (once finished) the exact counts. Deterministic bytes."""
    body = {
        "generator": "detect synth (data_prep.synth)",
        "dataset": dataset,
        "synthetic": True,
        "params": params,
        "complete": counts is not None,
        "counts": counts or {},
    }
    (out / MARKER_FILE).write_text(json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
