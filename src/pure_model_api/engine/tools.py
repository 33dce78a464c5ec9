"""Function tools: how a model's chat template is shown them, and how its replies call them.

Each model gets one of three call formats, chosen once from what its template does with tools:

- hermes (Qwen2.5, Qwen3, Hermes): the template lists the tools; a call is
  `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, after any text, several a reply.
- llama3 (Llama 3.1-3.3): the template lists the tools; a call is the whole reply,
  `{"name": ..., "parameters": {...}}`, one a reply.
- generic (a template that knows no tools, as the demo model's): the tools are described in the
  system message, and a call is the whole reply, `{"name": ..., "arguments": {...}}`, one a reply;
  earlier calls (`Calling name({...})`) and results go into the messages as text.

Calls are generated, not parsed out of free text: once a call opens (tool_calls.py), its name and
arguments are decoded under the tools' JSON schemas, so a call always parses and matches its schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pure_model_api.errors import BadRequest

EMPTY_PARAMETERS = '{"type": "object", "properties": {}, "additionalProperties": false}'  # a tool without parameters


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: str = EMPTY_PARAMETERS  # a JSON schema, as JSON text

    def definition(self) -> dict:
        """OpenAI's shape, which templates read."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": json.loads(self.parameters)}}


@dataclass(frozen=True)
class ToolRequest:
    """A request's tools and how it lets the model use them."""

    tools: tuple[Tool, ...]
    choice: str = "auto"  # "auto", "none", "required", or the name of the tool to call
    parallel: bool = True  # more than one call a reply, where the format has it

    def tool(self, name: str) -> Tool:
        (found,) = [tool for tool in self.tools if tool.name == name]
        return found

    @property
    def forced(self) -> bool:
        """The reply is a call ("required", or a tool's name)."""
        return self.choice not in ("auto", "none")

    @property
    def named(self) -> str | None:
        """The tool the reply must call, where the request names one."""
        return self.choice if self.choice not in ("auto", "none", "required") else None


@dataclass(frozen=True)
class CallFormat:
    name: str
    native: bool  # the template renders the tools and the calls itself
    opening: str  # written before a call's name (a JSON string)
    middle: str  # between the name and the arguments (a JSON object)
    closing: str  # after the arguments
    trigger: str | None  # the text that opens a call anywhere in a reply; None: a reply opening with "{"
    several: bool  # more than one call a reply


HERMES = CallFormat("hermes", True, '<tool_call>\n{"name": ', ', "arguments": ', "}\n</tool_call>", "<tool_call>", True)
LLAMA3 = CallFormat("llama3", True, '{"name": ', ', "parameters": ', "}", None, False)
GENERIC = CallFormat("generic", False, '{"name": ', ', "arguments": ', "}", None, False)
PROBE_NAME = "probe_function_4e1f"


def detect_format(renderer) -> CallFormat:
    """The format a template's own tool prompt asks for; generic where it shows no tools or asks
    for a format not known here."""
    probe = Tool(PROBE_NAME).definition()
    try:
        text = renderer.text([{"role": "user", "content": "hi"}], add_generation_prompt=True, tools=[probe])
    except BadRequest:
        return GENERIC
    if PROBE_NAME not in text:
        return GENERIC
    if HERMES.trigger in text:
        return HERMES
    if '"parameters"' in text:
        return LLAMA3
    return GENERIC


def template_messages(fmt: CallFormat, messages: list[dict], tools: ToolRequest | None,
                      ) -> tuple[list[dict], list[dict] | None]:
    """The messages and tool definitions to render: the template's own way for a native format,
    else the tools described in the system message and calls and results written as text."""
    definitions = [tool.definition() for tool in tools.tools] if tools else None
    if fmt.native:
        return [_native(m) for m in messages], definitions
    shown = [_generic(m) for m in messages]
    if definitions:
        text = generic_instructions(definitions)
        if shown and shown[0]["role"] == "system":
            shown[0] = {**shown[0], "content": f"{shown[0]['content']}\n\n{text}"}
        else:
            shown.insert(0, {"role": "system", "content": text})
    return shown, None


def generic_instructions(definitions: list[dict]) -> str:
    listed = "\n".join(json.dumps(d["function"]) for d in definitions)
    return ("You can call these functions:\n" + listed + "\nTo call one, answer with only a JSON object: "
            '{"name": <function name>, "arguments": <its arguments as a JSON object>}.')


def _native(message: dict) -> dict:
    calls = message.get("tool_calls")
    if not calls:
        return message
    return {**message, "content": message["content"] or "", "tool_calls": [
        {**call, "function": {**call["function"], "arguments": _arguments(call["function"]["arguments"])}}
        for call in calls]}


def _arguments(text: str):
    """Templates write a call's arguments with `tojson`: they want the object, not its JSON text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _generic(message: dict) -> dict:
    if message["role"] == "tool":
        return {"role": "user", "content": f"Result of call {message.get('tool_call_id', '')}: {message['content']}"}
    calls = message.get("tool_calls")
    if not calls:
        return message
    # Written as a note of the call, not in the answer shape: a small model shown its own call as an
    # answer writes it again after the result (the demo model does, every time), and reads the
    # result when shown a note.
    written = [f"Calling {c['function']['name']}({c['function']['arguments']})" for c in calls]
    return {"role": message["role"], "content": "\n".join(filter(None, [message["content"], *written]))}


def check_plain(renderer, messages: list[dict], definitions: list[dict] | None) -> None:
    """Tool definitions and calls go into the prompt as template text, where a control token's text
    (`<|im_end|>`) would become the control token: such text is a 400, not a way into the prompt."""
    texts = [json.dumps(definitions, ensure_ascii=False)] if definitions else []
    texts += [json.dumps(m["tool_calls"], ensure_ascii=False) for m in messages if m.get("tool_calls")]
    for text in texts:
        if renderer.encode(text) != renderer.encode_plain(text):
            raise BadRequest("a tool definition or tool call holds the text of one of the model's control tokens",
                             param="tools" if definitions and text == texts[0] else "messages")
