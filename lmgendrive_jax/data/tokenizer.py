"""Loads the configured tokenizer (a Hugging Face tokenizer directory) and tokenises to static shapes.

The embedded default is `assets/tokenizer` (byte-level BPE trained by
`data_pipelines/train_tokenizer.py`); at paper scale it is the LLaMA tokenizer saved beside the
weights. Loaded through `transformers.AutoTokenizer` (never trust_remote_code).
"""

from __future__ import annotations

import os

import numpy as np

from lmgendrive_jax.errors import DataError


def load_tokenizer(path: str):
  """`AutoTokenizer.from_pretrained(path)` with a DataError naming the path when it is wrong."""
  if not os.path.isdir(path):
    raise DataError(f"tokenizer directory {path!r} does not exist; train the default one with "
                    f"`python -m data_pipelines.train_tokenizer --out assets/tokenizer` or point "
                    f"the config's tokenizer at a Hugging Face tokenizer directory")
  if not any(os.path.exists(os.path.join(path, name)) for name in (
      "tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")):
    raise DataError(f"{path!r} holds no tokenizer files (tokenizer.json, tokenizer.model, "
                    f"vocab.json or tokenizer_config.json); it is not a tokenizer directory")
  from transformers import AutoTokenizer  # Local: importing transformers is slow.
  try:
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
  except Exception as e:  # noqa: BLE001  (transformers raises many types for a bad directory)
    raise DataError(f"could not load the tokenizer in {path!r}: {type(e).__name__}: {e}") from e
  if tokenizer.pad_token_id is None:
    raise DataError(f"tokenizer {path!r} has no pad token; static-shape batches need one "
                    f"(set pad_token in its tokenizer_config.json)")
  return tokenizer


def encode_padded(tokenizer, text: str, length: int, add_bos: bool = True
                  ) -> tuple[np.ndarray, np.ndarray, bool]:
  """text -> (int32[length] ids, bool[length] mask, truncated?), BOS first when `add_bos`.

  Padding uses the tokenizer's pad id; a text longer than `length` is cut (the caller counts it).
  """
  ids = tokenizer(text, add_special_tokens=False)["input_ids"]
  if add_bos and tokenizer.bos_token_id is not None:
    ids = [tokenizer.bos_token_id] + list(ids)
  truncated = len(ids) > length
  ids = ids[:length]
  tokens = np.full((length,), tokenizer.pad_token_id, np.int32)
  tokens[:len(ids)] = ids
  mask = np.zeros((length,), bool)
  mask[:len(ids)] = True
  return tokens, mask, truncated
