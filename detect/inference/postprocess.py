"""Post-processing of detector output, following the RSNA Pneumonia Challenge winners.

Every function here works on one image's numpy arrays and keeps the project's box contract:
boxes float32 [N, 4] xyxy in pixels (x to the right, y down), scores float32 [N]; no boxes is
shape (0, 4) / (0,), never None.

The steps, in the order `postprocess_boxes` applies them (each a documented option with its
default in `detect.predictions.PostprocessSettings`):

1. (before this module) the model's boxes are mapped from the letterboxed input back to the
   ORIGINAL image (`to_original_coords`: divide by the letterbox scale, clip to the image).
2. Horizontal-flip test-time augmentation (`tta`, default OFF): the model also sees the image
   flipped left-right; its boxes are flipped back (`hflip_boxes`: x1' = W - x2, x2' = W - x1)
   and merged with the unflipped view's boxes by weighted box fusion (`tta_merge='wbf'`,
   default; ZFTurbo's WBF as used by the winners) or by concatenation + NMS
   (`tta_merge='nms'`). The image-level probabilities of both views are averaged.
3. Gating (`gate`, default ON): each box score is multiplied by the image's pneumonia
   probability (box score x image probability), and with `drop_below_threshold` (default ON)
   every box of an image whose pneumonia probability is below the decision threshold is
   dropped, so an image decided "no pneumonia" has no boxes. With `gate` off neither happens.
4. Score threshold (`score_thresh`, default 0.3) on the FINAL score (after gating and TTA).
5. Shrinking (`shrink_factor`, default 0.875; 1.0 = off): width and height are scaled about
   the box centre. The RSNA annotators drew generous boxes and the metric's IoU > 0.4..0.75
   rewards tighter ones: the 1st and several top-10 solutions shrank boxes to ~87.5 %.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from data_prep.errors import ConfigError
from data_prep.records import empty_boxes
from detect.predictions import TTA_MERGE_METHODS, PostprocessSettings, RawPrediction

# Boxes narrower or shorter than this are dropped at the end of post-processing: boxes.json
# writes 2 decimals, so such a box would be written with width or height 0.
MIN_BOX_SIZE_PX = 0.01


def _as_boxes(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)


def _as_scores(scores: np.ndarray) -> np.ndarray:
    return np.asarray(scores, dtype=np.float32).reshape(-1)


def to_original_coords(boxes_input_xyxy: np.ndarray, scale: float, width_px: int, height_px: int) -> np.ndarray:
    """Map boxes from the letterboxed model input back to the original image.

    Divides by the letterbox `scale` (see data_prep.geometry), clips to [0, width] x [0, height]
    (the model may predict into the padding). Returns float32 [N, 4]; the row count is kept
    (a box wholly in the padding becomes degenerate: drop it with `keep_valid_boxes`).
    """
    boxes = _as_boxes(boxes_input_xyxy) / np.float32(scale)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, float(width_px))
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, float(height_px))
    return boxes.astype(np.float32)


def keep_valid_boxes(
    boxes_xyxy: np.ndarray, scores: np.ndarray, min_size_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Keep boxes whose width and height are > min_size_px (drops boxes clipped away entirely)."""
    boxes, scores = _as_boxes(boxes_xyxy), _as_scores(scores)
    keep = (boxes[:, 2] - boxes[:, 0] > min_size_px) & (boxes[:, 3] - boxes[:, 1] > min_size_px)
    return boxes[keep], scores[keep]


def hflip_boxes(boxes_xyxy: np.ndarray, width_px: float) -> np.ndarray:
    """Mirror boxes left-right in an image `width_px` wide: x1' = W - x2, x2' = W - x1.

    Width 400: [10, 10, 200, 300] <-> [200, 10, 390, 300]. Its own inverse.
    """
    boxes = _as_boxes(boxes_xyxy)
    flipped = boxes.copy()
    flipped[:, 0] = width_px - boxes[:, 2]
    flipped[:, 2] = width_px - boxes[:, 0]
    return flipped


def shrink_boxes(boxes_xyxy: np.ndarray, factor: float) -> np.ndarray:
    """Scale each box's width and height by `factor` about its centre (1.0 = unchanged).

    factor 0.5: [0, 0, 100, 200] -> [25, 50, 75, 150].
    """
    boxes = _as_boxes(boxes_xyxy)
    if factor == 1.0 or len(boxes) == 0:
        return boxes.copy()
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2.0
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2.0
    half_w = (boxes[:, 2] - boxes[:, 0]) * (factor / 2.0)
    half_h = (boxes[:, 3] - boxes[:, 1]) * (factor / 2.0)
    return np.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=1).astype(
        np.float32
    )


def box_iou(boxes_a_xyxy: np.ndarray, boxes_b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU, float64 [len(a), len(b)]: torchvision.ops.box_iou computed in float64.

    Continuous areas (no +1 pixel), as pycocotools and the RSNA evaluation. A pair whose union
    is 0 (two zero-area boxes) has IoU 0, where torchvision's division would give nan.
    """
    a = torch.from_numpy(np.asarray(boxes_a_xyxy, dtype=np.float64).reshape(-1, 4))
    b = torch.from_numpy(np.asarray(boxes_b_xyxy, dtype=np.float64).reshape(-1, 4))
    return torch.nan_to_num(torchvision.ops.box_iou(a, b), nan=0.0).numpy()


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, by descending score.

    A box is suppressed when its IoU with a kept, higher-scoring box is > iou_thresh
    (torchvision.ops.nms's rule). Ties in score keep the earlier box (stable sort).
    """
    boxes, scores = _as_boxes(boxes_xyxy), _as_scores(scores)
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_thresh
    return np.asarray(keep, dtype=np.int64)


def weighted_boxes_fusion(
    views: list[tuple[np.ndarray, np.ndarray]], iou_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted box fusion (Solovyev et al. 2019, ZFTurbo's implementation) over `views`.

    `views`: one (boxes_xyxy [N, 4], scores [N]) pair per model or TTA view, same image and
    coordinates. Boxes of all views, by descending score, join the first cluster whose fused
    box has IoU > iou_thresh with them, else start a cluster. A cluster's fused box is the
    score-weighted mean of its boxes; its score the mean of its scores times
    min(len(cluster), len(views)) / len(views), so a box only one of two views found keeps
    half its score. Returns (boxes_xyxy [M, 4], scores [M]) by descending score.
    """
    n_views = len(views)
    if n_views == 0:
        return empty_boxes(), np.zeros(0, dtype=np.float32)
    all_boxes = np.concatenate([_as_boxes(b) for b, _ in views]).astype(np.float64)
    all_scores = np.concatenate([_as_scores(s) for _, s in views]).astype(np.float64)
    order = np.argsort(-all_scores, kind="stable")
    clusters: list[list[int]] = []
    fused: list[np.ndarray] = []
    for i in order:
        if fused:
            iou = box_iou(all_boxes[i : i + 1], np.stack(fused))[0]
            best = int(np.argmax(iou))
            if iou[best] > iou_thresh:
                clusters[best].append(int(i))
                members = clusters[best]
                weights = all_scores[members]
                fused[best] = (all_boxes[members] * weights[:, None]).sum(0) / max(weights.sum(), 1e-12)
                continue
        clusters.append([int(i)])
        fused.append(all_boxes[i].copy())
    if not fused:
        return empty_boxes(), np.zeros(0, dtype=np.float32)
    scores = np.array([all_scores[m].mean() * min(len(m), n_views) / n_views for m in clusters], dtype=np.float64)
    boxes = np.stack(fused)
    order = np.argsort(-scores, kind="stable")
    return boxes[order].astype(np.float32), scores[order].astype(np.float32)


def merge_tta_boxes(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    flipped_view_boxes_xyxy: np.ndarray,
    flipped_view_scores: np.ndarray,
    *,
    method: str = "wbf",
    iou_thresh: float = 0.55,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the boxes of the original view with those of the flipped view (already flipped back).

    'wbf': weighted box fusion over the two views (see `weighted_boxes_fusion`).
    'nms': concatenate both views and keep the non-suppressed boxes (`nms`).
    Returns (boxes_xyxy, scores) by descending score.
    """
    if method == "wbf":
        return weighted_boxes_fusion([(boxes_xyxy, scores), (flipped_view_boxes_xyxy, flipped_view_scores)], iou_thresh)
    if method == "nms":
        boxes = np.concatenate([_as_boxes(boxes_xyxy), _as_boxes(flipped_view_boxes_xyxy)])
        all_scores = np.concatenate([_as_scores(scores), _as_scores(flipped_view_scores)])
        keep = nms(boxes, all_scores, iou_thresh)
        return boxes[keep], all_scores[keep]
    raise ConfigError(f"TTA merge method '{method}' is unknown; choose one of: {', '.join(TTA_MERGE_METHODS)}")


def gate_scores(scores: np.ndarray, image_probability: float) -> np.ndarray:
    """Box score x image pneumonia probability (the winners' classifier gating)."""
    return (_as_scores(scores) * np.float32(image_probability)).astype(np.float32)


def postprocess_boxes(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    *,
    pneumonia_probability: float,
    pneumonia_threshold: float,
    settings: PostprocessSettings,
    width_px: int | None = None,
    height_px: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gate, threshold and shrink one image's boxes (ORIGINAL pixels, TTA already merged).

    Order: gating (x probability; all boxes dropped when the probability is below
    `pneumonia_threshold` and `drop_below_threshold`), then `score_thresh` on the gated score,
    then shrinking about the centre, then clipping to the image when its size is given, then
    dropping boxes of width or height <= MIN_BOX_SIZE_PX.
    Returns (boxes_xyxy float32 [M, 4], scores float32 [M]) by descending score.
    """
    boxes, out_scores = _as_boxes(boxes_xyxy), _as_scores(scores)
    if settings.gate:
        if settings.drop_below_threshold and pneumonia_probability < pneumonia_threshold:
            return empty_boxes(), np.zeros(0, dtype=np.float32)
        out_scores = gate_scores(out_scores, pneumonia_probability)
    keep = out_scores >= settings.score_thresh
    boxes, out_scores = boxes[keep], out_scores[keep]
    boxes = shrink_boxes(boxes, settings.shrink_factor)
    if width_px is not None and height_px is not None:
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, float(width_px))
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, float(height_px))
    boxes, out_scores = keep_valid_boxes(boxes, out_scores, MIN_BOX_SIZE_PX)
    order = np.argsort(-out_scores, kind="stable")
    return boxes[order], out_scores[order]


def postprocess_prediction(
    raw: RawPrediction, pneumonia_threshold: float, settings: PostprocessSettings
) -> tuple[np.ndarray, np.ndarray]:
    """`postprocess_boxes` on one RawPrediction: its boxes, probability and image size."""
    return postprocess_boxes(
        raw.boxes_xyxy,
        raw.scores,
        pneumonia_probability=raw.pneumonia_probability,
        pneumonia_threshold=pneumonia_threshold,
        settings=settings,
        width_px=raw.width_px,
        height_px=raw.height_px,
    )
