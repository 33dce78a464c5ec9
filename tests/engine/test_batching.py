"""The continuous-batching engine on the real demo model, in-process."""

import asyncio

import pytest

from pure_model_api.engine import Finished, SamplingParams, TextDelta
from pure_model_api.errors import ServerBusy

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "Explain gravity simply.",
           "List three fruits.", "你好！", "What is 2+2?", "Tell me a joke.", "Name a color.",
           "Who wrote Hamlet?", "Describe a cat.", "What is Python?", "Give me a recipe for tea.",
           "Why is the sky blue?", "Count to five.", "What is AI?", "Translate hello to French."]


async def generate(engine, prompt: str, **params) -> tuple[Finished, list[str]]:
    handle = engine.submit(engine.render_chat([{"role": "user", "content": prompt}]),
                           SamplingParams(**{"max_tokens": 24, "temperature": 0.0, **params}))
    deltas = []
    async for event in handle.events():
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        else:
            return event, deltas


def run(coroutine):
    return asyncio.run(coroutine)


def test_greedy_replies_do_not_depend_on_the_batch(demo_engine):
    solo = [run(generate(demo_engine, p))[0].text for p in PROMPTS]

    async def together():
        return await asyncio.gather(*(generate(demo_engine, p) for p in PROMPTS))

    batched = [finished.text for finished, _ in run(together())]
    assert batched == solo


def test_a_late_request_joins_the_running_batch(demo_engine):
    async def staggered():
        first = asyncio.create_task(generate(demo_engine, PROMPTS[1], max_tokens=60, ignore_eos=True))
        await asyncio.sleep(0.5)  # the first is decoding by now
        second = await generate(demo_engine, PROMPTS[0], max_tokens=8)
        return await first, second, first.done()

    (first, _), (second, _), _ = run(staggered())
    solo_second = run(generate(demo_engine, PROMPTS[0], max_tokens=8))[0]
    solo_first = run(generate(demo_engine, PROMPTS[1], max_tokens=60, ignore_eos=True))[0]
    assert second.text == solo_second.text and first.text == solo_first.text
    # It started within one prefill, not after the long one finished.
    assert second.time_to_first_token_s < first.time_per_output_token_s * 60 / 2


def test_deltas_add_up_to_the_reply_and_usage_counts_tokens(demo_engine):
    finished, deltas = run(generate(demo_engine, "Say hello in Chinese.", max_tokens=30))
    assert "".join(deltas) == finished.text
    assert finished.completion_tokens <= 30 and finished.prompt_tokens > 10


def test_chinese_streams_as_whole_characters(demo_engine):
    finished, deltas = run(generate(demo_engine, "请用中文介绍一下北京。", max_tokens=40))
    assert not any("\ufffd" in d for d in deltas)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in finished.text)


def test_same_seed_same_reply_other_seed_other_reply(demo_engine):
    params = dict(temperature=1.0, max_tokens=30, seed=1234, ignore_eos=True)
    first = run(generate(demo_engine, "Tell me a story.", **params))[0].text
    again = run(generate(demo_engine, "Tell me a story.", **params))[0].text
    other = run(generate(demo_engine, "Tell me a story.", **{**params, "seed": 99}))[0].text
    assert first == again and first != other


def test_seeded_reply_is_the_same_inside_a_batch(demo_engine):
    params = dict(temperature=0.8, top_p=0.9, top_k=40, max_tokens=20, seed=7)
    alone = run(generate(demo_engine, "Describe the sea.", **params))[0].text

    async def crowded():
        others = [generate(demo_engine, p, temperature=1.0) for p in PROMPTS[:6]]
        results = await asyncio.gather(generate(demo_engine, "Describe the sea.", **params), *others)
        return results[0][0].text

    assert run(crowded()) == alone


def test_stop_strings_cut_the_reply(demo_engine):
    full = run(generate(demo_engine, "What is the capital of France?"))[0]
    assert "Paris" in full.text
    stopped = run(generate(demo_engine, "What is the capital of France?", stop=("Paris",)))[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[:full.text.index("Paris")]


def test_max_tokens_is_a_length_finish(demo_engine):
    finished = run(generate(demo_engine, "Write a long essay about rivers.", max_tokens=5, ignore_eos=True))[0]
    assert finished.finish_reason == "length" and finished.completion_tokens == 5


def test_cancel_frees_the_slot(demo_engine):
    async def cancelled():
        handle = demo_engine.submit(demo_engine.render_chat([{"role": "user", "content": "Count to 1000."}]),
                                    SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True))
        events = handle.events()
        await anext(events)
        await anext(events)  # the first token comes from the prefill; by the second it is in the batch
        assert demo_engine.stats().running_requests == 1
        await events.aclose()  # what a disconnecting client does
        for _ in range(100):
            if demo_engine.stats().running_requests == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    assert run(cancelled())
    assert demo_engine.stats().kv_cache_bytes == 0


def test_a_full_queue_is_refused_at_once(tmp_path):
    from pure_model_api.engine.base import EngineOptions
    from pure_model_api.engine.transformers import TransformersEngine

    engine = TransformersEngine.load(EngineOptions(model="demo", device="cpu", max_batch_size=1, max_queue=1))
    try:
        async def flood():
            prompt = engine.render_chat([{"role": "user", "content": "hi"}])
            long = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True)
            running = engine.submit(prompt, long)
            events = running.events()
            await anext(events)  # admitted and decoding
            queued = engine.submit(prompt, long)
            with pytest.raises(ServerBusy):
                engine.submit(prompt, long)
            running.cancel()
            queued.cancel()
            await events.aclose()

        run(flood())
    finally:
        engine.close()


def test_long_prompts_arriving_together_join_in_bounded_prefills(demo_engine, monkeypatch):
    monkeypatch.setattr(demo_engine, "max_prefill_tokens", 256)  # as 8192 does for long histories
    topics = ["rivers", "mountains", "deserts"]
    prompts = [f"Here are some notes on {t}: " + "and so on, " * 30 + f"Summarize the notes on {t}." for t in topics]
    lengths = [len(demo_engine.render_chat([{"role": "user", "content": p}])) for p in prompts]
    assert max(lengths) * len(prompts) > 256 >= max(lengths)  # they cannot all share one prefill
    solo = [run(generate(demo_engine, p, max_tokens=6))[0].text for p in prompts]
    prefill_sizes = []
    prefill = demo_engine._prefill
    monkeypatch.setattr(demo_engine, "_prefill",
                        lambda joining: (prefill_sizes.append(len(joining)), prefill(joining)))

    async def together():
        return await asyncio.gather(*(generate(demo_engine, p, max_tokens=6) for p in prompts))

    assert [finished.text for finished, _ in run(together())] == solo
    assert sum(prefill_sizes) == 3 and max(prefill_sizes) == 1


def test_equal_prompts_arriving_together_are_prefilled_once(demo_engine):
    """A request's n choices share one prompt: one prefill row, copied to each choice."""
    prompt_ids = demo_engine.render_chat([{"role": "user", "content": "Describe the sea."}])
    params = [SamplingParams(max_tokens=16, temperature=1.0, seed=seed) for seed in (1, 2, 3, 4)]

    async def text_of(handle) -> str:
        async for event in handle.events():
            if isinstance(event, Finished):
                return event.text

    async def alone(p):
        return await text_of(demo_engine.submit(prompt_ids, p))

    solo = [run(alone(p)) for p in params]
    prefills = []
    hook = demo_engine.model.register_forward_pre_hook(
        lambda _module, _args, kwargs: prefills.append(tuple(kwargs["input_ids"].shape))
        if kwargs["input_ids"].shape[1] > 1 else None, with_kwargs=True)

    async def together():
        with demo_engine.wakeup:  # the inference thread waits here: all four are admitted at one step
            handles = [demo_engine.submit(prompt_ids, p) for p in params]
        return await asyncio.gather(*(text_of(h) for h in handles))

    try:
        texts = run(together())
    finally:
        hook.remove()
    assert texts == solo and len(set(solo)) == 4  # each choice its own, and the same as alone
    assert prefills == [(1, len(prompt_ids))]
