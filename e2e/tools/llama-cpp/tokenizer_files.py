"""Writes a model's tokenizer files as Hugging Face publishes them
(`tokenizer.json`, `tokenizer_config.json`) from one of llama.cpp's
byte-pair vocabularies (a ggml-vocab-*.gguf of `tokenizer.ggml.model` gpt2):
its tokens and merges, GPT-2's byte-level pre-tokenizer, its control tokens
as special added tokens, and tiny_model.py's chat template. benchrun sizes
prompts with them for servers without `/tokenize`, and the tests check the
counts against llama.cpp's own `/tokenize` of the model written from the same
vocabulary.

Usage: tokenizer_files.py VOCAB.gguf OUTDIR
"""

import json
import os
import sys

from gguf import GGUFReader

from tiny_model import CHAT_TEMPLATE, field_value

CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
USER_DEFINED = 4


def main(vocab_path, out_dir):
    reader = GGUFReader(vocab_path)
    fields = {name: field_value(f)[0] for name, f in reader.fields.items() if name.startswith("tokenizer.")}
    if fields.get("tokenizer.ggml.model") != "gpt2":
        sys.exit(f"{vocab_path}: not a byte-pair (gpt2) vocabulary")
    tokens = fields["tokenizer.ggml.tokens"]
    types = fields.get("tokenizer.ggml.token_type", [1] * len(tokens))
    merges = fields["tokenizer.ggml.merges"]
    bos = tokens[fields["tokenizer.ggml.bos_token_id"]]
    eos = tokens[fields["tokenizer.ggml.eos_token_id"]]
    added = [
        {
            "id": i,
            "content": t,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": kind != CONTROL,
            "special": kind == CONTROL,
        }
        for i, (t, kind) in enumerate(zip(tokens, types))
        if kind in (CONTROL, USER_DEFINED)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": bool(fields.get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": CHAT_TEMPLATE,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
