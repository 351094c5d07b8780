"""Image decoding and augmentation for the grain pipelines (numpy + PIL, runs in grain workers).

Views are decoded from the stored JPEG/PNG bytes (JPEG with PIL's draft mode, so a big source is
decoded at a reduced scale when the target is small), resized so that the `crop_scale` fraction of
it covers the target (LMDrive: resize 256 -> crop 224, crop_scale 0.875), then cropped to the
configured (H, W): at random in training, centred otherwise. Colour jitter changes brightness,
contrast and saturation by factors in [1 - s, 1 + s], one draw per example (all views and frames
of a clip share it, so generated video targets do not flicker).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lmgendrive_jax.errors import DataError


def decode(data: bytes, min_height: int, min_width: int) -> Image.Image:
  """Encoded image -> RGB PIL image at least (min_height, min_width) (JPEG draft decode)."""
  try:
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
      # draft picks the smallest 1/2^k scale that still covers the requested size.
      image.draft("RGB", (min_width, min_height))
    image = image.convert("RGB")
  except Exception as e:  # noqa: BLE001
    raise DataError(f"stored image could not be decoded ({type(e).__name__}: {e}); rebuild the "
                    f"dataset with data_pipelines.build_tfds") from e
  return image


def crop_params(rng: np.random.Generator | None) -> tuple[float, float]:
  """Relative crop offsets in [0, 1] (random, or centred when rng is None)."""
  if rng is None:
    return 0.5, 0.5
  return float(rng.random()), float(rng.random())


def crop_box(src_width: int, src_height: int, height: int, width: int, crop_scale: float,
             offsets: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int, int, int]:
  """`resize_crop`'s geometry: (new_width, new_height, left, top) of the resized image and of
  the crop's top-left corner in it."""
  scale = max(height / crop_scale / src_height, width / crop_scale / src_width)
  new_w, new_h = max(width, round(src_width * scale)), max(height, round(src_height * scale))
  top = int(round(offsets[0] * (new_h - height)))
  left = int(round(offsets[1] * (new_w - width)))
  return new_w, new_h, left, top


def crop_window(src_width: int, src_height: int, height: int, width: int, crop_scale: float,
                offsets: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float, float, float]:
  """The part of the source image `resize_crop` keeps, (u0, u1, v0, v1) as fractions of its
  width and height (for labels that must follow the crop: `view_layout.sub_window`)."""
  new_w, new_h, left, top = crop_box(src_width, src_height, height, width, crop_scale, offsets)
  return left / new_w, (left + width) / new_w, top / new_h, (top + height) / new_h


def centred_window(window: tuple[float, float, float, float], width: int
                   ) -> tuple[float, float, float, float]:
  """The centred crop's window (`crop_box` at offsets 0.5) of the resized image that `window`
  (u0, u1, v0, v1: fractions of it, `width` pixels wide) was cut from; rows kept."""
  new_w = round(width / (window[1] - window[0]))
  left = int(round(0.5 * (new_w - width)))
  return left / new_w, (left + width) / new_w, window[2], window[3]


def resize_crop(image: Image.Image, height: int, width: int, crop_scale: float,
                offsets: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
  """Resize so a (height/crop_scale, width/crop_scale) box fits inside, crop (height, width) at
  the relative `offsets` (row, col). -> uint8[height, width, 3]."""
  new_w, new_h, left, top = crop_box(*image.size, height, width, crop_scale, offsets)
  if (new_w, new_h) != image.size:
    image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=2.0)
  return np.asarray(image.crop((left, top, left + width, top + height)), np.uint8)


def jitter_factors(rng: np.random.Generator | None, strength: float) -> np.ndarray | None:
  """(brightness, contrast, saturation) factors, or None for no jitter."""
  if rng is None or strength <= 0:
    return None
  return rng.uniform(1 - strength, 1 + strength, size=3).astype(np.float32)


def colour_jitter(images: np.ndarray, factors: np.ndarray | None) -> np.ndarray:
  """uint8[..., H, W, 3] -> same, with brightness, contrast and saturation scaled per `factors`."""
  if factors is None:
    return images
  brightness, contrast, saturation = (float(f) for f in factors)
  x = images.astype(np.float32) * brightness
  grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
  mean = grey.mean(axis=(-1, -2), keepdims=True)[..., None]
  x = (x - mean) * contrast + mean
  grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  x = (x - grey) * saturation + grey
  return np.clip(x + 0.5, 0, 255).astype(np.uint8)
