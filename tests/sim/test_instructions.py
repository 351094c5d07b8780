"""The LangAuto instruction vocabulary: ids, categories, paraphrase slots, rendering, corpus."""

import re

import numpy as np
import pytest

from lmgendrive_jax.errors import SimulatorError
from lmgendrive_jax.sim import instructions as I


def test_vocabulary_shape_and_categories():
  assert len(I.INSTRUCTIONS) == 65
  assert [s.id for s in I.INSTRUCTIONS] == list(range(65))
  expected = {**{i: "turn" for i in range(34)}, **{i: "follow" for i in range(34, 50)},
              **{i: "notice" for i in range(50, 60)}, **{i: "other" for i in range(60, 65)}}
  assert {s.id: s.category for s in I.INSTRUCTIONS} == expected
  assert len({s.name for s in I.INSTRUCTIONS}) == 65
  for s in I.INSTRUCTIONS:
    assert len(s.paraphrases) >= 8 and len(set(s.paraphrases)) == len(s.paraphrases), s.name
    for p in s.paraphrases:  # Every slot of a paraphrase is a declared arg, and every arg is used.
      assert set(re.findall(r"{(\w+)}", p)) == set(s.arg_names), (s.name, p)


def test_render_fills_args_from_dict_or_list_and_is_seeded():
  text = I.render(I.ID_BY_NAME["Follow-road-for-x-m"], {"distance": 45.0}, np.random.default_rng(1))
  assert "45 metres" in text and "{" not in text
  a = I.render(64, [12, 3, "left"], np.random.default_rng(7))
  b = I.render(64, {"forward": 12, "lateral": 3, "side": "left"}, np.random.default_rng(7))
  assert a == b and "12" in a and "left" in a
  texts = {I.render(0, {}, np.random.default_rng(k)) for k in range(40)}
  assert len(texts) > 4  # Paraphrases really vary.


def test_render_errors_name_the_problem():
  with pytest.raises(SimulatorError, match="distance"):
    I.render(2, {}, np.random.default_rng(0))
  with pytest.raises(SimulatorError, match="65"):
    I.render(65, {}, np.random.default_rng(0))


def test_corpus_covers_every_paraphrase():
  corpus = I.instruction_corpus(seed=0, samples_per_paraphrase=2)
  assert all("{" not in t for t in corpus)
  assert len(corpus) == sum(len(s.paraphrases) * (2 if s.arg_names else 1) for s in I.INSTRUCTIONS)
  assert corpus == I.instruction_corpus(seed=0, samples_per_paraphrase=2)
