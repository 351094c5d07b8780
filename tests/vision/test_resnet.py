"""ResNet backbone vs timm (random init, random BatchNorm statistics) through the converter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lmgendrive_jax.convert import timm_resnet
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models.resnet import ResNet
from torch_refs import import_timm

# Odd intermediate sizes (40x56 -> ... -> 3x4 -> 2x2) exercise timm's ceil-mode average pool.
HEIGHT, WIDTH = 40, 56


def _timm_model(arch, **kwargs):
  timm = import_timm()
  torch.manual_seed(0)
  model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs).eval()
  with torch.no_grad():  # Non-trivial BatchNorm statistics and affine terms.
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_(0.0, 0.2)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.normal_(1.0, 0.2)
        module.bias.normal_(0.0, 0.2)
  return model


def _relative_error(ours, theirs):
  return float(np.max(np.abs(ours - theirs)) / (np.max(np.abs(theirs)) + 1e-12))


@pytest.mark.parametrize("arch, kwargs", [
    ("resnet50d", dict(layers=(1, 2, 1, 1), channels=(8, 16, 16, 24), stem_width=8)),
    ("resnet18", dict(layers=(1, 1, 2, 1), channels=(8, 8, 16, 16))),
    ("resnet10t", dict(channels=(8, 16, 16, 32), stem_width=16)),
])
def test_timm_resnet_features_match_after_import(tmp_path, arch, kwargs):
  from timm.models._hub import save_for_hf
  reference = _timm_model(arch, **kwargs)
  save_for_hf(reference, str(tmp_path), safe_serialization=True)
  model, variables = timm_resnet.load(str(tmp_path))

  images = np.random.default_rng(0).normal(size=(2, HEIGHT, WIDTH, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = reference.forward_features(torch.from_numpy(images).permute(0, 3, 1, 2))
  theirs = theirs.permute(0, 2, 3, 1).numpy()
  ours, out = model.apply(variables, jnp.asarray(images))
  assert ours.shape == theirs.shape
  assert _relative_error(np.asarray(ours), theirs) < 1e-4
  assert set(out) == {"stage1", "stage2", "stage3", "stage4"}


def test_saved_resnet_loads_strictly_into_timm(tmp_path):
  from timm.models._hub import save_for_hf
  timm = import_timm()
  reference = _timm_model("resnet50d", layers=(1, 1, 1, 1), channels=(8, 8, 16, 16), stem_width=8)
  save_for_hf(reference, str(tmp_path / "src"), safe_serialization=True)
  model, variables = timm_resnet.load(str(tmp_path / "src"))
  timm_resnet.save(model, variables, str(tmp_path / "out"))

  config = json.loads((tmp_path / "out" / "config.json").read_text())
  rebuilt = timm.create_model(config["architecture"], pretrained=False, num_classes=0,
                              **config["model_args"]).eval()
  from safetensors.torch import load_file
  rebuilt.load_state_dict(load_file(str(tmp_path / "out" / "model.safetensors")), strict=True)
  images = torch.randn(1, 3, 32, 32)
  with torch.no_grad():
    np.testing.assert_allclose(rebuilt.forward_features(images).numpy(),
                               reference.forward_features(images).numpy(), rtol=1e-5, atol=1e-6)


def test_load_rejects_a_directory_without_resnet_weights(tmp_path):
  (tmp_path / "config.json").write_text("{}")
  from safetensors.numpy import save_file
  save_file({"blocks.0.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "model.safetensors"))
  with pytest.raises(ConversionError, match="stem"):
    timm_resnet.load(str(tmp_path))


@pytest.mark.parametrize("output_stride, size", [(32, (2, 2)), (16, (4, 4)), (8, (8, 8))])
def test_output_stride_keeps_the_resolution_of_the_later_stages(output_stride, size):
  net = ResNet(block="basic", layers=(1, 1, 1, 1), channels=(4, 8, 12, 16), stem_width=4,
               frozen_batch_norm=False, output_stride=output_stride)
  images = jnp.ones((1, 64, 64, 3))
  variables = net.init(jax.random.key(0), images)
  features, stages = net.apply(variables, images)
  assert features.shape == (1, *size, 16)
  assert stages["stage1"].shape[1:3] == (16, 16)
  # Same parameter shapes at every output stride: only the strides change.
  reference = ResNet(block="basic", layers=(1, 1, 1, 1), channels=(4, 8, 12, 16), stem_width=4,
                     frozen_batch_norm=False).init(jax.random.key(0), images)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, reference)


def test_output_stride_other_than_8_16_32_is_an_error():
  with pytest.raises(ValueError, match="output_stride=12"):
    ResNet(layers=(1, 1, 1, 1), output_stride=12).init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
