"""VAE: parity with diffusers' AutoencoderKL (random init, small config) through our converter."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax.convert import diffusers_vae
from lmgendrive_jax.errors import ConversionError
from lmgendrive_jax.models import vae as vae_lib

torch = pytest.importorskip("torch")

CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16),
              down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
              layers_per_block=2, norm_num_groups=4, scaling_factor=0.5, shift_factor=0.1)


def _diffusers_vae(seed=0, **overrides):
  import torch_refs
  torch_refs.define_missing_torchvision_ops()
  from diffusers import AutoencoderKL
  torch.manual_seed(seed)
  model = AutoencoderKL(**{**CONFIG, **overrides}).eval()
  with torch.no_grad():  # random GroupNorm affine so a transposed scale/bias would show
    for name, p in model.named_parameters():
      if "norm" in name:
        p.add_(0.2 * torch.randn_like(p))
  return model


def _rel(a, b):
  return float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("vae"))
  theirs = _diffusers_vae()
  theirs.save_pretrained(path)
  return theirs, path


def test_encode_decode_match_diffusers(reference):
  theirs, path = reference
  model, params = diffusers_vae.load(path)
  assert model.scaling_factor == 0.5 and model.shift_factor == 0.1
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 16, 24, 3)).astype(np.float32)
  with torch.no_grad():
    posterior = theirs.encode(torch.from_numpy(images.transpose(0, 3, 1, 2))).latent_dist
    their_mean = posterior.mean.numpy().transpose(0, 2, 3, 1)
    their_logvar = posterior.logvar.numpy().transpose(0, 2, 3, 1)
    latents = rng.normal(size=their_mean.shape).astype(np.float32)
    their_decoded = theirs.decode(torch.from_numpy(latents.transpose(0, 3, 1, 2))).sample
    their_decoded = their_decoded.numpy().transpose(0, 2, 3, 1)
  variables = {"params": params}
  mean, logvar = jax.jit(lambda v, x: model.apply(v, x, method=model.encode))(variables, images)
  decoded = jax.jit(lambda v, z: model.apply(v, z, method=model.decode))(variables, latents)
  assert mean.shape == (2, 4, 6, 4)
  assert _rel(np.asarray(mean), their_mean) < 1e-4
  assert _rel(np.asarray(logvar), their_logvar) < 1e-4
  assert _rel(np.asarray(decoded), their_decoded) < 1e-4
  # Scaling: the world generator's latents are (mean - shift) * scale.
  scaled = model.apply(variables, images, method=model.encode_latents)
  np.testing.assert_allclose(np.asarray(scaled), (their_mean - 0.1) * 0.5, rtol=1e-4, atol=1e-5)


def test_saved_vae_reloads_in_diffusers(reference, tmp_path):
  theirs, path = reference
  model, params = diffusers_vae.load(path)
  diffusers_vae.save(model, params, str(tmp_path))
  from diffusers import AutoencoderKL
  reloaded = AutoencoderKL.from_pretrained(str(tmp_path)).eval()
  theirs_state = theirs.state_dict()
  for name, value in reloaded.state_dict().items():
    np.testing.assert_array_equal(value.numpy(), theirs_state[name].numpy(), err_msg=name)
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["block_out_channels"] == [8, 16, 16]


def test_video_helpers_round_trip_shapes(reference):
  _, path = reference
  model, params = diffusers_vae.load(path)
  video = np.random.default_rng(1).integers(0, 256, (1, 1, 2, 16, 16, 3), dtype=np.uint8)
  latents = vae_lib.encode_video(model, {"params": params}, jnp.asarray(video))
  assert latents.shape == (1, 1, 2, 4, 4, 4)
  frames = vae_lib.decode_video(model, {"params": params}, latents)
  assert frames.shape == video.shape and frames.dtype == jnp.uint8


def test_load_rejects_missing_tensor_and_unsupported_blocks(reference, tmp_path):
  _, path = reference
  from safetensors.numpy import load_file, save_file
  tensors = load_file(f"{path}/diffusion_pytorch_model.safetensors")
  del tensors["decoder.conv_out.bias"]
  save_file(tensors, str(tmp_path / "diffusion_pytorch_model.safetensors"))
  with open(f"{path}/config.json") as f:
    config = json.load(f)
  with open(tmp_path / "config.json", "w") as f:
    json.dump(config, f)
  with pytest.raises(ConversionError, match="decoder.conv_out.bias"):
    diffusers_vae.load(str(tmp_path))
  with open(tmp_path / "config.json", "w") as f:
    json.dump({**config, "down_block_types": ["AttnDownEncoderBlock2D"] * 3}, f)
  with pytest.raises(ConversionError, match="DownEncoderBlock2D"):
    diffusers_vae.load(str(tmp_path))


@pytest.mark.slow
def test_vae_loss_trains_a_vae_from_scratch():
  """vae_loss drives a freshly initialised VAE to reconstruct (a one-level VAE keeps the compile
  short; the tiny preset adds levels of the same blocks)."""
  import optax
  model = vae_lib.AutoencoderKL(block_out_channels=(8,), layers_per_block=1, norm_num_groups=4,
                                scaling_factor=1.0)
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:8, 0:8] / 8.0
  images = np.stack([np.stack([np.sin(2 * np.pi * (a * xx + b * yy) + c) for a, b, c in
                               rng.uniform(0, 1.5, (3, 3))], -1) for _ in range(2)])
  images = jnp.asarray(images.astype(np.float32) * 0.8)
  params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), images)["params"]
  optimizer = optax.adam(3e-3)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state, key):
    (loss, out), grads = jax.value_and_grad(
        lambda p: vae_lib.vae_loss(model, {"params": p}, images, key), has_aux=True)(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state, out

  losses = []
  for i in range(60):
    params, state, out = step(params, state, jax.random.key(i, impl="rbg"))
    losses.append(float(out["l2"]))
  assert losses[-1] < 0.3 * losses[0], losses[::10]
