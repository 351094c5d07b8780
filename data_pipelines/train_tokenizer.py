"""Command: train the embedded default tokenizer (byte-level BPE) on the instruction vocabulary.

  python -m data_pipelines.train_tokenizer --out assets/tokenizer [--vocab_size 1024]

The corpus is every paraphrase of the LangAuto instruction vocabulary with sampled arguments
(`lmgendrive_jax.sim.instructions.instruction_corpus`). Byte-level, so any text encodes (no
unknown token is ever produced; `<unk>` exists for API compatibility). Specials: `<pad>` = 0,
`<s>` (BOS), `</s>` (EOS), `<unk>`. Saved in Hugging Face format (tokenizer.json +
tokenizer_config.json) so `transformers.AutoTokenizer.from_pretrained`
loads it; the post-processor prepends BOS like LLaMA's. The vocabulary may end up smaller than
`--vocab_size` when the corpus has fewer distinct merges (the model's vocab_size only needs to be
at least `len(tokenizer)`).
"""

from __future__ import annotations

import argparse
import json
import os

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def train(corpus: list[str], vocab_size: int = 1024, min_frequency: int = 2):
  """-> a transformers fast tokenizer trained on `corpus`."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
  from transformers import PreTrainedTokenizerFast

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                special_tokens=list(SPECIAL_TOKENS),
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                show_progress=False)
  tokenizer.train_from_iterator(corpus, trainer)
  bos = tokenizer.token_to_id("<s>")
  tokenizer.post_processor = processors.TemplateProcessing(
      single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
  return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                 pad_token="<pad>", unk_token="<unk>", padding_side="right",
                                 model_max_length=1024)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="assets/tokenizer")
  parser.add_argument("--vocab_size", type=int, default=1024)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--samples_per_paraphrase", type=int, default=3)
  args = parser.parse_args(argv)
  from lmgendrive_jax.sim.instructions import instruction_corpus
  corpus = instruction_corpus(seed=args.seed, samples_per_paraphrase=args.samples_per_paraphrase)
  tokenizer = train(corpus, args.vocab_size)
  os.makedirs(args.out, exist_ok=True)
  tokenizer.save_pretrained(args.out)
  lengths = [len(tokenizer(text)["input_ids"]) for text in corpus]
  print(json.dumps({"out": args.out, "vocab": len(tokenizer), "corpus_texts": len(corpus),
                    "max_tokens_with_bos": max(lengths),
                    "mean_tokens": round(sum(lengths) / len(lengths), 2)}))


if __name__ == "__main__":
  main()
