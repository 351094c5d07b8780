"""ViT backbone vs transformers ViTModel and CLIPVisionModel (random init) through hf_vit."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lmgendrive_jax.convert import hf_vit

SIZE = 32


def _reference(kind):
  import transformers
  torch.manual_seed(0)
  common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                image_size=SIZE, patch_size=8)
  if kind == "vit":
    model = transformers.ViTModel(transformers.ViTConfig(**common), add_pooling_layer=False)
  else:
    model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**common))
  with torch.no_grad():  # LayerNorms away from identity so the test sees them.
    for name, param in model.named_parameters():
      if "norm" in name:
        param.add_(0.1 * torch.randn_like(param))
  return model.eval()


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_hidden_states_match_transformers(tmp_path, kind):
  reference = _reference(kind)
  reference.save_pretrained(str(tmp_path))
  model, params = hf_vit.load(str(tmp_path))
  assert model.layout == kind

  images = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = reference(pixel_values=torch.from_numpy(images).permute(0, 3, 1, 2),
                       output_hidden_states=True)
  tokens, out = model.apply({"params": params}, jnp.asarray(images))
  last = theirs.last_hidden_state.numpy()
  scale = np.max(np.abs(last))
  grid = SIZE // 8
  np.testing.assert_allclose(np.asarray(tokens), last[:, 1:].reshape(2, grid, grid, 32),
                             atol=1e-4 * scale)
  np.testing.assert_allclose(np.asarray(out["cls"]), last[:, 0], atol=1e-4 * scale)
  for ours, hf in zip(out["hidden_states"], theirs.hidden_states):
    np.testing.assert_allclose(np.asarray(ours), hf.numpy(), atol=1e-4 * np.max(np.abs(hf.numpy())))


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_saved_vit_reloads_in_transformers(tmp_path, kind):
  import transformers
  reference = _reference(kind)
  reference.save_pretrained(str(tmp_path / "src"))
  model, params = hf_vit.load(str(tmp_path / "src"))
  hf_vit.save(model, params, str(tmp_path / "out"))
  cls = transformers.ViTModel if kind == "vit" else transformers.CLIPVisionModel
  reloaded = cls.from_pretrained(str(tmp_path / "out")).eval()
  images = torch.randn(1, 3, SIZE, SIZE)
  with torch.no_grad():
    np.testing.assert_allclose(reloaded(pixel_values=images).last_hidden_state.numpy(),
                               reference(pixel_values=images).last_hidden_state.numpy(),
                               rtol=1e-5, atol=1e-5)
