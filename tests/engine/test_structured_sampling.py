"""Constrained decoding through the sampler the in-process engines share, on the real vocabularies of
the families the service is for (Qwen2's and Llama 3's, from llama.cpp's vocabulary files, through
the llama.cpp bridge) and the demo model's (a Hugging Face tokenizer, as the transformers engine
sees it). Random logits stand in for a model that wants anything at all: whatever it wants, the
reply parses and matches the schema, and ends when the JSON does."""

import json

import jsonschema
import numpy as np
import pytest
from helpers import demo_model_dir, family_tokenizer

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta
from pure_model_api.engine.requests import Sequence, accept_token
from pure_model_api.engine.sampling import choose_next_tokens
from pure_model_api.engine.structured import Grammars, hf_vocabulary, llamacpp_vocabulary

SCHEMAS = {
    "an object of every kind of value": {
        "type": "object", "additionalProperties": False,
        "required": ["city", "population", "capital", "rivers", "mayor"],
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
            "capital": {"type": "boolean"},
            "rivers": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
            "mayor": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["Anne", "Jean-Luc"]}]},
        },  # no "number": its digits never have to end, and random logits rarely end them
    },
    "nested objects by $ref": {
        "type": "object", "additionalProperties": False, "required": ["point"],
        "$defs": {"coordinate": {"type": "integer", "minimum": -90, "maximum": 90}},
        "properties": {"point": {"type": "object", "additionalProperties": False, "required": ["x", "y"],
                                 "properties": {"x": {"$ref": "#/$defs/coordinate"},
                                                "y": {"$ref": "#/$defs/coordinate"}}}},
    },
}


def vocabulary(name: str):
    """(tokenizer, logits per step, its Grammars as the engine builds them, end-of-turn ids)"""
    if name == "demo":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(demo_model_dir())
        eos = {tokenizer.eos_token_id}
        return tokenizer, len(tokenizer), Grammars(lambda: hf_vocabulary(tokenizer, len(tokenizer), eos)), eos
    tokenizer = family_tokenizer(*name.split(":"))
    eos = tokenizer.end_of_turn_ids()
    return tokenizer, tokenizer.model.n_vocab(), Grammars(lambda: llamacpp_vocabulary(tokenizer.model, eos)), eos


@pytest.fixture(scope="module", params=["demo", "qwen2:Qwen-Qwen2.5-7B-Instruct",
                                        "llama-bpe:meta-llama-Llama-3.1-8B-Instruct"])
def vocab(request):
    return vocabulary(request.param)


def run(vocab, schema: dict, seed: int, max_tokens: int = 400) -> tuple[str, str]:
    """Sample a reply from random logits as an engine step would; (text, finish reason)."""
    tokenizer, size, grammars, eos = vocab
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, json_schema=json.dumps(schema))
    events = []
    sequence = Sequence([1, 2, 3], params, events.append, tokenizer)
    sequence.constraint = grammars.constraint(params.json_schema)
    rng = np.random.default_rng(seed)
    while True:
        logits = rng.normal(0.0, 3.0, size=(1, size)).astype(np.float32)
        (token,) = choose_next_tokens(logits, [sequence])
        if not accept_token(sequence, token, eos, context_length=100_000):
            break
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    return finished.text, finished.finish_reason


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_whatever_the_model_wants_the_reply_matches_the_schema(vocab, schema):
    for seed in range(3):
        text, reason = run(vocab, SCHEMAS[schema], seed)
        assert reason == "stop", text
        jsonschema.validate(json.loads(text), SCHEMAS[schema])
        assert text.startswith('{"') and text.endswith("}")  # compact: no whitespace for a model to loop on


def test_a_reply_cut_by_max_tokens_is_a_length_finish(vocab):
    text, reason = run(vocab, SCHEMAS["an object of every kind of value"], seed=0, max_tokens=3)
    assert reason == "length" and text.startswith("{")
