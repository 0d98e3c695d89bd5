"""Tiny training set-ups shared by the training, checkpoint, DDP and CLI tests.

Synthetic RSNA / Kermany data in the real Kaggle layouts at 128 px, a MobileNetV3 detector at
64 px with a small head, batches of 2, two steps per epoch: a run takes a few seconds on a CPU
(the box head's RoIAlign backward dominates a step).
"""

from __future__ import annotations

from pathlib import Path

from detect.config import Config, config_from_dict

TINY_OVERRIDES: tuple[str, ...] = (
    "name=tiny",
    "model.name=mobilenet_v3_large_fpn",
    "model.weights=none",
    "model.trainable_backbone_layers=6",
    "model.anchor_sizes_px=[]",  # torchvision's: on top of configs/demo.yaml (ResNet-18 FPN anchors) too
    "model.head_hidden_dim=32",
    "model.box_detections_per_img=5",
    "data.image_size_px=64",
    "data.use_cache=false",
    "data.num_workers=0",
    "data.val_fraction=0.25",
    "data.test_fraction=0.1",
    "data.augment.affine_prob=0.5",
    "train.batch_size=2",
    "train.epochs=2",
    "train.max_steps_per_epoch=2",
    "train.optimizer=sgd",
    "train.lr=0.01",
    "train.schedule=cosine",
    "train.warmup_steps=2",
    "train.amp=false",
    "train.device=cpu",
    "train.log_every_steps=0",
    "train.early_stop_patience=0",
)


def tiny_config(*overrides: str) -> Config:
    return config_from_dict({}, [*TINY_OVERRIDES, *overrides])


def tiny_config_dict(*overrides: str) -> dict:
    from detect.config import config_to_dict

    return config_to_dict(tiny_config(*overrides))


def make_rsna(root: Path, n_images: int = 24, seed: int = 0, prepare: bool = True) -> Path:
    """Synthetic RSNA at 128 px under `root`; prepared (manifest + splits) unless prepare=False."""
    from data_prep.synth import synth_rsna

    synth_rsna(root, n_images=n_images, size_px=128, seed=seed)
    if prepare:
        from data_prep.prepare import prepare_dataset

        prepare_dataset(root, val_fraction=0.25, test_fraction=0.1, seed=0, workers=1)
    return root


def make_kermany(root: Path, n_images: int = 24, seed: int = 0, prepare: bool = True) -> Path:
    from data_prep.synth import synth_kermany

    synth_kermany(root, n_images=n_images, seed=seed, size_range_px=(96, 160))
    if prepare:
        from data_prep.prepare import prepare_dataset

        prepare_dataset(root, val_fraction=0.25, test_fraction=0.1, seed=0, workers=1)
    return root
