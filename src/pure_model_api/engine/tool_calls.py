"""A reply that may call tools, on any engine: free text until a call opens, then the call decoded
under its schema, in phases that are each one ordinary generation of the engine.

- Free text runs until the format's opening text (hermes: `<tool_call>`, a stop string) or, for a
  format whose call is the whole reply, until a first token that opens a JSON object.
- The call's name is decoded as one of the tools' names (a JSON `enum`), unless one tool is all
  it can be; its arguments are decoded under the tool's parameter schema and stream as they come.
- Each phase's prompt is the last one and what was written since, so an engine with a prefix
  cache (vLLM, llama.cpp) prefills only the new tokens.

`tool_choice` "required" or a name starts at the call; "auto" starts with free text (and, where
the format has it and the request allows it, goes back to free text after each call); "none"
is one plain generation. The reply's `finish_reason` is "tool_calls" when it ends after a call.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable

from pure_model_api.engine.params import Finished, SamplingParams, TextDelta, ToolCall, ToolCallDelta
from pure_model_api.engine.tools import CallFormat, ToolRequest

NAME_TOKENS = 100  # a name is at most 64 characters (OpenAI's rule), so fewer tokens than this

Generate = Callable[[list[int], SamplingParams], AsyncIterator[TextDelta | Finished]]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallGeneration:
    def __init__(self, renderer, fmt: CallFormat, tools: ToolRequest, generate: Generate, context_length: int):
        self.renderer, self.format, self.tools = renderer, fmt, tools
        self.generate, self.context_length = generate, context_length

    async def events(self, prompt_ids: list[int], params: SamplingParams,
                     ) -> AsyncIterator[TextDelta | ToolCallDelta | Finished]:
        self.ids, self.params = list(prompt_ids), params
        self.text: list[str] = []
        self.calls: list[ToolCall] = []
        self.finishes: list[Finished] = []
        if self.tools.choice == "none":
            async for event in self._phase(params):
                yield event
            yield self._finished()
            return
        call_now = self.tools.forced
        while self._room() > 0:
            if not call_now:
                async for event in self._free_text():
                    yield event
                if not self.opened:
                    break
            async for event in self._call():
                yield event
            call_now = False
            if self.tools.forced or not (self.format.several and self.tools.parallel) or self._cut():
                break
        yield self._finished()

    # ---- phases ----
    async def _phase(self, params: SamplingParams) -> AsyncIterator[TextDelta | Finished]:
        """One generation from the prompt so far; its Finished is kept, not passed on."""
        params = dataclasses.replace(params, max_tokens=min(params.max_tokens, self._room()))
        async for event in self.generate(self.ids, params):
            if isinstance(event, Finished):
                self.finishes.append(event)
            else:
                yield event

    async def _free_text(self) -> AsyncIterator[TextDelta]:
        """Text until a call opens (`self.opened`) or the reply ends."""
        self.opened = False
        trigger = self.format.trigger
        if trigger is None and (self.text or self.calls):
            return  # a call is the whole reply: once anything is written, nothing more can call
        if trigger is None:  # a first token that opens a JSON object opens the call
            first = [event async for event in self._phase(dataclasses.replace(self.params, max_tokens=1))]
            written = self.finishes[-1].text
            if written.lstrip().startswith("{"):
                self.opened = True
                return
            for event in first:
                yield event
            self._write(written)
            if self._room() <= 0:
                return
            params = self._remaining(self.params)
        else:
            params = self._remaining(dataclasses.replace(self.params, stop=(*self.params.stop, trigger)))
        if self.calls:  # between calls, blank text is the format's layout, not part of the answer
            held = [event async for event in self._phase(params)]
            if self.finishes[-1].text.strip():
                for event in held:
                    yield event
        else:
            async for event in self._phase(params):
                yield event
        last = self.finishes[-1]
        self._write(last.text, shown=not self.calls or bool(last.text.strip()))
        self.opened = trigger is not None and last.finish_reason == "stop" and last.stop_string == trigger

    async def _call(self) -> AsyncIterator[ToolCallDelta]:
        """One call: its name, then its arguments, streamed."""
        index, call_id = len(self.calls), new_call_id()
        self.ids += self.renderer.encode(self.format.opening)
        name = await self._name()
        if name is None:
            return
        yield ToolCallDelta(index, id=call_id, name=name)
        self.ids += self.renderer.encode_plain(json.dumps(name)) + self.renderer.encode(self.format.middle)
        schema = self.tools.tool(name).parameters
        arguments = []
        async for event in self._phase(self._remaining(self._constrained(schema))):
            if event.text:
                arguments.append(event.text)
                yield ToolCallDelta(index, arguments=event.text)
        self.calls.append(ToolCall(call_id, name, "".join(arguments)))
        self.ids += self.renderer.encode_plain("".join(arguments)) + self.renderer.encode(self.format.closing)

    async def _name(self) -> str | None:
        if self.tools.named is not None:
            return self.tools.named
        names = [tool.name for tool in self.tools.tools]
        if len(names) == 1:
            return names[0]
        params = dataclasses.replace(self._constrained(json.dumps({"enum": names})), max_tokens=NAME_TOKENS)
        async for _ in self._phase(params):
            pass
        try:
            return json.loads(self.finishes[-1].text)
        except ValueError:  # cut short by max_tokens or the context
            return None

    # ---- bookkeeping ----
    def _constrained(self, schema: str) -> SamplingParams:
        return dataclasses.replace(self.params, json_schema=schema, stop=(), logprobs=None)

    def _remaining(self, params: SamplingParams) -> SamplingParams:
        used = sum(f.completion_tokens for f in self.finishes)
        return dataclasses.replace(params, max_tokens=max(self.params.max_tokens - used, 0))

    def _room(self) -> int:
        """Tokens the next phase may write: what max_tokens leaves, within the context."""
        return min(self._remaining(self.params).max_tokens, self.context_length - len(self.ids))

    def _cut(self) -> bool:
        """The reply ran out of tokens (max_tokens or the context)."""
        return self._room() <= 0 or (bool(self.finishes) and self.finishes[-1].finish_reason == "length")

    def _write(self, text: str, shown: bool = True) -> None:
        if shown:
            self.text.append(text)
        self.ids += self.renderer.encode_plain(text)

    def _finished(self) -> Finished:
        first, last = self.finishes[0], self.finishes[-1]
        reason = last.finish_reason
        if self.calls and not self._cut():
            reason = "tool_calls"
        logprobs = None
        if self.params.logprobs is not None:
            logprobs = tuple(entry for f in self.finishes if f.logprobs for entry in f.logprobs)
        return dataclasses.replace(
            first, text="".join(self.text) if self.tools.choice != "none" else last.text,
            finish_reason=reason, completion_tokens=sum(f.completion_tokens for f in self.finishes),
            stop_string=last.stop_string if reason == "stop" else None, tool_calls=tuple(self.calls),
            logprobs=logprobs)
