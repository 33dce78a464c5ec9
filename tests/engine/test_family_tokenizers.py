"""The two ways the service turns a conversation into tokens agree on the families' real formats:
the Hugging Face tokenizer and template (transformers and vLLM engines) and the GGUF file's own
vocabulary and template in llama.cpp (llama.cpp engine), on the tiny Qwen2 and Llama models built
from llama.cpp's vocabularies. A conversation moved from one engine to the other keeps its prompt
token for token, tool calls and results included."""

import json

import pytest
from family_models import FAMILIES, family_model
from helpers import family_tokenizer

from pure_model_api.engine.prompts import ChatRenderer
from pure_model_api.engine.tools import Tool, ToolRequest, detect_format, template_messages

TOOLS = ToolRequest((Tool("get_weather", "The forecast for a city", json.dumps(
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),))
CONVERSATION = [
    {"role": "system", "content": "You plan trips. Réponds en français si on te parle français."},
    {"role": "user", "content": "Weather in Zürich, 東京 and Kraków? 🌦️ <tool_call> is only text here."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Sonnig, 24 °C"},
    {"role": "assistant", "content": "It is sunny in Zürich.\n\n  Indented   text\tand tabs."},
    {"role": "user", "content": "Thanks!"},
]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("tools", [None, TOOLS], ids=["plain", "tools"])
def test_the_hf_and_gguf_paths_give_the_same_prompt_tokens(family, tools):
    from transformers import AutoTokenizer

    model = family_model(family)
    vocab, template, _ = FAMILIES[family]
    renderers = [ChatRenderer(AutoTokenizer.from_pretrained(model.hf_dir)),
                 ChatRenderer(family_tokenizer(vocab, template))]
    prompts = []
    for renderer in renderers:
        shown, definitions = template_messages(detect_format(renderer), CONVERSATION, tools)
        prompts.append(renderer.render(shown, definitions))
    assert prompts[0] == prompts[1]
    text = renderers[1].tokenizer.decode(prompts[1], skip_special_tokens=False)
    assert "Sonnig, 24 °C" in text and "東京" in text
