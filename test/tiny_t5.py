"""A tiny random T5 encoder + tokenizer written into a folder, built offline (tests cannot download T5-11B).

The tokenizer is a Unigram model over a handful of words with T5's special tokens (<pad>=0, </s>=1,
<unk>=2) and T5's Metaspace pre-tokenizer, so `T5TokenizerFast.from_pretrained` reads it like the real one.
"""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("fold", "shirt", "put", "candy", "in", "bag", "do", "the", "toy", "task", "stack", "cups", "on", "plate")


def write_tiny_t5(dest: Path, d_model: int = 16, seed: int = 0) -> Path:
    """save_pretrained of a random T5 encoder of width `d_model` and its tokenizer into `dest`; returns dest."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in WORDS]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(dest)
    cfg = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=4, d_ff=2 * d_model, num_layers=2, num_heads=2)
    torch.manual_seed(seed)
    T5EncoderModel(cfg).save_pretrained(dest)
    return dest


def encode_directly(folder: Path, instruction: str, max_length: int) -> torch.Tensor:
    """(1, L, D) bf16 by calling transformers by hand, as upstream's get_t5_emb.py does."""
    from transformers import T5EncoderModel, T5TokenizerFast

    tok = T5TokenizerFast.from_pretrained(folder)
    enc = T5EncoderModel.from_pretrained(folder, dtype=torch.float32).eval()
    batch = tok([instruction], return_tensors="pt", padding="max_length", truncation=True, max_length=max_length)
    with torch.no_grad():
        hidden = enc(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    hidden[0, int(batch.attention_mask.sum()):] = 0
    return hidden.to(torch.bfloat16)
