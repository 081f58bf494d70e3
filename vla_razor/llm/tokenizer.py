"""A character-level transformers fast tokenizer over the arithmetic alphabet, built locally (nothing
downloaded)."""

from __future__ import annotations

from .tasks import ALPHABET

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def build_tokenizer():
    """A ``PreTrainedTokenizerFast``: one token per character of :data:`ALPHABET`, plus pad/bos/eos.

    ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` round-trip it like any Hugging Face tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([PAD, BOS, EOS, *ALPHABET])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, padding_side="left"
    )
