"""Layout changes between PyTorch state-dict tensors and our Flax parameters.

Shared by the vision-side converters (`hf_vit.py`, `hf_qformer.py`); each converter is a table
`our path -> (their name, layout)` and these two functions do the rest:

- "same":       identical layout (LayerNorm, biases of plain Linear layers, embeddings)
- "transpose":  torch Linear weight [out, in] -> our kernel [in, out]
- "heads_in":   torch [H*D, E] -> our attention q/k/v kernel [E, H, D]
- "heads_bias": torch [H*D] -> our q/k/v bias [H, D]
- "heads_out":  torch [E, H*D] -> our output kernel [H, D, E]
- "conv":       torch Conv2d weight [out, in, kh, kw] -> our kernel [kh, kw, in, out]
- "flat":       any torch shape with the same number of elements (e.g. [1, 1, C] -> [C])
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.errors import ConversionError

LAYOUTS = ("same", "transpose", "heads_in", "heads_bias", "heads_out", "conv", "flat")


def to_ours(theirs: np.ndarray, layout: str, our_shape: tuple[int, ...], name: str = "?"
            ) -> np.ndarray:
  """Their tensor -> our array of `our_shape`; a mismatch is a ConversionError naming `name`."""
  theirs = np.asarray(theirs)
  if layout == "same":
    ours = theirs
  elif layout == "transpose":
    ours = theirs.T
  elif layout == "heads_in":
    ours = theirs.T.reshape(theirs.shape[1], *our_shape[1:]) if theirs.ndim == 2 else theirs
  elif layout == "heads_bias":
    ours = theirs.reshape(our_shape) if theirs.size == np.prod(our_shape) else theirs
  elif layout == "heads_out":
    ours = theirs.T.reshape(*our_shape[:2], theirs.shape[0]) if theirs.ndim == 2 else theirs
  elif layout == "conv":
    ours = theirs.transpose(2, 3, 1, 0) if theirs.ndim == 4 else theirs
  elif layout == "flat":
    ours = theirs.reshape(our_shape) if theirs.size == np.prod(our_shape) else theirs
  else:
    raise AssertionError(layout)
  if tuple(ours.shape) != tuple(our_shape):
    raise ConversionError(f"tensor {name} of shape {theirs.shape} does not fit our parameter of "
                          f"shape {tuple(our_shape)} (layout {layout}): the config does not match "
                          f"the weights")
  return ours


def to_theirs(ours: np.ndarray, layout: str, their_shape: tuple[int, ...] | None = None
              ) -> np.ndarray:
  """Our array -> their layout (`their_shape` is needed only for "flat")."""
  ours = np.asarray(ours)
  if layout in ("same",):
    return ours
  if layout == "transpose":
    return ours.T
  if layout == "heads_in":
    return ours.reshape(ours.shape[0], -1).T
  if layout == "heads_bias":
    return ours.reshape(-1)
  if layout == "heads_out":
    return ours.reshape(-1, ours.shape[-1]).T
  if layout == "conv":
    return ours.transpose(3, 2, 0, 1)
  if layout == "flat":
    return ours.reshape(their_shape)
  raise AssertionError(layout)
