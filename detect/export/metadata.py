"""What an exported file says about its model: one JSON document beside the graph.

    metadata = export_metadata(cfg, extra, source)     # a plain dict, json-serialisable
    text = json.dumps(metadata)                         # ONNX: metadata_props[METADATA_KEY]
                                                        # TorchScript: extra file METADATA_FILE

Keys (fixed; `format_version` grows when one changes meaning):
    format, format_version    "detect-export", EXPORT_FORMAT_VERSION
    model_name, image_size_px the MODELS entry and the square input size S
    image_mean, image_std     the normalisation, applied INSIDE the graph (inputs are [0, 1])
    letterbox                 how the input was made (aspect kept, padded right / bottom with 0)
    inputs, outputs           the tensor contract (names, dtypes, shapes; detect.export.wrapper)
    batch_size                the graph's fixed batch (null: any)
    config                    the resolved training Config (detect.config.config_to_dict): CLAHE,
                              thresholds' context, everything `detect infer` rebuilds a Predictor from
    extra                     the checkpoint's operating_points, epoch, metrics, versions (what
                              `detect infer` decides with and a model card shows)
    source_checkpoint         path and sha256 of the checkpoint it was exported from
"""

from __future__ import annotations

import json
import math
from typing import Any

from data_prep.errors import CheckpointError, ConfigError
from detect.config import Config, config_from_dict, config_to_dict
from detect.models.registry import get_model_spec

EXPORT_FORMAT = "detect-export"
EXPORT_FORMAT_VERSION = 1
METADATA_KEY = "detect_metadata"  # ONNX metadata_props key
METADATA_FILE = "detect_metadata.json"  # TorchScript extra file name
# the checkpoint `extra` keys an export carries (training state and data paths stay behind)
EXTRA_KEYS: tuple[str, ...] = (
    "operating_points",
    "epoch",
    "global_step",
    "best_metric",
    "best_epoch",
    "metrics",
    "versions",
)

INPUTS_CONTRACT: dict[str, dict[str, Any]] = {
    "images": {"dtype": "float32", "shape": ["B", 3, "S", "S"], "meaning": "letterboxed, in [0, 1]"},
    "scale": {"dtype": "float32", "shape": ["B"], "meaning": "letterbox scale S / max(H, W)"},
    "orig_size_hw": {"dtype": "int64", "shape": ["B", 2], "meaning": "original (height, width) in pixels"},
}
OUTPUTS_CONTRACT: dict[str, dict[str, Any]] = {
    "boxes": {"dtype": "float32", "shape": ["B", "D", 4], "meaning": "xyxy, original pixels, clipped; padding rows 0"},
    "scores": {"dtype": "float32", "shape": ["B", "D"], "meaning": "descending; -1 = padding"},
    "num_detections": {"dtype": "int64", "shape": ["B"], "meaning": "valid rows per image (first)"},
    "rsna_class_probs": {"dtype": "float32", "shape": ["B", 3], "meaning": "softmax over RSNA classes"},
    "pneumonia_prob": {"dtype": "float32", "shape": ["B"], "meaning": "sigmoid"},
    "subtype_probs": {"dtype": "float32", "shape": ["B", 3], "meaning": "softmax over Kermany subtypes"},
}


def _json_safe(value: Any) -> Any:
    """NaN / inf as None (strict JSON has neither); everything else as json would write it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def export_metadata(
    cfg: Config,
    extra: dict[str, Any],
    *,
    max_detections: int,
    batch_size: int | None,
    source_path: str,
    source_sha256: str,
) -> dict[str, Any]:
    spec = get_model_spec(cfg.model.name)
    kept = {key: extra[key] for key in EXTRA_KEYS if key in extra and extra[key] is not None}
    return _json_safe(
        {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "model_name": cfg.model.name,
            "image_size_px": int(cfg.data.image_size_px),
            "image_mean": list(spec.image_mean),
            "image_std": list(spec.image_std),
            "letterbox": "aspect kept, padded right / bottom with 0 (detect.data.preprocess.prepare_image)",
            "inputs": INPUTS_CONTRACT,
            "outputs": OUTPUTS_CONTRACT,
            "max_detections": int(max_detections),
            "batch_size": batch_size,
            "config": config_to_dict(cfg),
            "extra": kept,
            "source_checkpoint": {"path": source_path, "sha256": source_sha256},
        }
    )


MAX_METADATA_CHARS = 4 << 20  # the config, operating points and a metrics history: tens of kilobytes


def parse_metadata(text: str | None, path: str) -> dict[str, Any]:
    """The metadata JSON of an exported file, checked; CheckpointError naming `path` otherwise."""
    if not text:
        raise CheckpointError(f"{path}: no {METADATA_KEY} in the file: not a model written by `detect export`")
    if len(text) > MAX_METADATA_CHARS:
        raise CheckpointError(f"{path}: its {METADATA_KEY} is over {MAX_METADATA_CHARS >> 20} MiB; refused")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its {METADATA_KEY} is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: its {METADATA_KEY} nests too deep to be detect's export metadata") from None
    if not isinstance(metadata, dict) or metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: its {METADATA_KEY} is not detect's export metadata")
    if int(metadata.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: export format {metadata.get('format_version')} is newer than this detect "
            f"understands ({EXPORT_FORMAT_VERSION}); upgrade detect"
        )
    return metadata


def config_of_metadata(metadata: dict[str, Any], path: str) -> Config:
    try:
        return config_from_dict(metadata["config"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{path}: its export metadata holds no training config") from None
    except ConfigError as exc:
        raise CheckpointError(f"{path}: stored config is not valid for this detect version ({exc})") from None
