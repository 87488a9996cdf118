"""Writes a tiny llama-architecture model for llama.cpp's server: a real
tokenizer vocabulary (one of the ggml-vocab-*.gguf files llama.cpp ships for
its tokenizer tests), a ChatML chat template, and small random weights.

It serves real tokenization, a real chat template, real sampling and real
continuous batching on a CPU; only its words are noise. Nothing is
downloaded: the vocabulary comes from llama.cpp's source, the weights from a
seeded generator, so the same arguments write the same file.

Usage: tiny_model.py VOCAB.gguf OUT.gguf
"""

import sys

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 64, 4, 2, 128, 4096


def field_value(field):
    """A reader field's value: a string, a number, or a list of them."""
    kinds = field.types
    if kinds[0] == GGUFValueType.ARRAY:
        inner = kinds[1]
        parts = [field.parts[i] for i in field.data]
        if inner == GGUFValueType.STRING:
            return [bytes(p).decode("utf-8", errors="replace") for p in parts], inner
        return [p.tolist()[0] for p in parts], inner
    part = field.parts[field.data[0]]
    if kinds[0] == GGUFValueType.STRING:
        return bytes(part).decode("utf-8"), kinds[0]
    return part.tolist()[0], kinds[0]


def main(vocab_path, out_path):
    reader = GGUFReader(vocab_path)
    writer = GGUFWriter(out_path, "llama")
    writer.add_name("benchrun-tiny")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # all F32
    n_vocab = None
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        if name == "tokenizer.chat_template":
            continue
        value, kind = field_value(field)
        if name == "tokenizer.ggml.tokens":
            n_vocab = len(value)
        if isinstance(value, list):
            writer.add_array(name, value) if kind == GGUFValueType.STRING else writer.add_key_value(
                name, value, GGUFValueType.ARRAY, sub_type=kind
            )
        else:
            writer.add_key_value(name, value, kind)
    if n_vocab is None:
        sys.exit(f"{vocab_path}: no tokenizer.ggml.tokens")
    writer.add_chat_template(CHAT_TEMPLATE)

    rng = np.random.default_rng(20261207)

    def weights(*shape, scale=0.02):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731
    writer.add_tensor("token_embd.weight", weights(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", ones(N_EMBD))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(p + t + ".weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(p + "ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(p + "ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(p + "ffn_down.weight", weights(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", weights(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
