"""Vision Transformer backbone in Hugging Face's ViT / CLIP-vision layout.

The ViT option of the vision encoder's per-view backbone (`models/vision.py`); the ResNet in
`models/resnet.py` is the other. `layout="vit"` is transformers' `ViTModel` (patch conv with bias,
final LayerNorm on every token, GELU); `layout="clip"` is `CLIPVisionModel` (patch conv without
bias, a LayerNorm before the first layer, quick-GELU, no final norm on the tokens).
`convert/hf_vit.py` maps both checkpoints onto this module.

images: f32[N, H, W, 3] (H = W = image_size) -> (patch tokens f32[N, H/p, W/p, hidden],
{"cls": f32[N, hidden], "hidden_states": per-layer f32[N, 1 + h*w, hidden] (input first)}).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.attention import Attention
from lmgendrive_jax.nn.mlp import Mlp
from lmgendrive_jax.nn.norms import LayerNorm

LAYOUTS = ("vit", "clip")


class EncoderLayer(nn.Module):
  """Pre-norm self-attention + MLP block. x: [N, L, E] -> [N, L, E]."""
  num_heads: int
  mlp_dim: int
  activation: str
  layer_norm_eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    width = x.shape[-1]
    normed = LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="norm1")(x)
    attended, _ = Attention(self.num_heads, width // self.num_heads, use_bias=True,
                            dtype=self.dtype, param_dtype=self.param_dtype, name="attn")(normed)
    x = x + attended
    normed = LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                       name="norm2")(x)
    x = x + Mlp(self.mlp_dim, activation=self.activation, dtype=self.dtype,
                param_dtype=self.param_dtype, name="mlp")(normed)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class ViT(nn.Module):
  """ViT / CLIP vision tower. Fields match `config.vision_preset(...).backbone` for kind "vit"."""
  image_size: int = 224
  patch_size: int = 16
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  layout: str = "vit"
  activation: str = "gelu"
  layer_norm_eps: float = 1e-12
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    return self.hidden_size

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    del train  # No dropout or batch statistics.
    if self.layout not in LAYOUTS:
      raise ValueError(f"ViT.layout={self.layout!r}; choose one of {LAYOUTS}")
    n, height, width, _ = images.shape
    if (height, width) != (self.image_size, self.image_size):
      raise ValueError(f"ViT(image_size={self.image_size}) got images of {height}x{width}; resize "
                       f"the views or set image_size (position embeddings are not interpolated)")
    grid = self.image_size // self.patch_size
    patches = nn.Conv(self.hidden_size, (self.patch_size, self.patch_size),
                      strides=(self.patch_size, self.patch_size), padding="VALID",
                      use_bias=self.layout == "vit", dtype=self.dtype,
                      param_dtype=self.param_dtype, name="patch_embed",
                      kernel_init=nn.with_logical_partitioning(
                          nn.initializers.lecun_normal(), (None, None, "conv_in", "embed")),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                             ("embed",)))(images.astype(self.dtype))
    patches = patches.reshape(n, grid * grid, self.hidden_size)
    cls = self.param("cls_token", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("embed",)), (self.hidden_size,), self.param_dtype)
    pos = self.param("pos_embed", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("length", "embed")), (grid * grid + 1, self.hidden_size),
                     self.param_dtype)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, self.hidden_size)),
                         patches], axis=1) + pos.astype(self.dtype)
    if self.layout == "clip":
      x = LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                    name="pre_norm")(x)
    hidden_states = [x]
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.mlp_dim, self.activation, self.layer_norm_eps,
                       self.dtype, self.param_dtype, name=f"layer_{i}")(x)
      hidden_states.append(x)
    if self.layout == "vit":
      x = LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                    name="final_norm")(x)
    tokens = x[:, 1:].reshape(n, grid, grid, self.hidden_size)
    tokens = nn.with_logical_constraint(tokens, ("batch", "height", "width", "embed"))
    return tokens, {"cls": x[:, 0], "hidden_states": hidden_states}
