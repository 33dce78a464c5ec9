"""The llama.cpp engine's slots against llama.cpp's own record of its KV cache: every slot holds
exactly the tokens the engine believes it holds, so a cache can only be reused for those tokens."""

import asyncio

import pytest

from pure_model_api.engine import Finished, SamplingParams


@pytest.fixture(scope="module")
def engine():
    from pure_model_api.engine.base import EngineOptions
    from pure_model_api.engine.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.load(EngineOptions(model="demo", engine="llama.cpp", max_batch_size=4,
                                               kv_token_budget=1024))
    yield engine
    engine.close()


async def generate(engine, messages, max_tokens=12) -> Finished:
    handle = engine.submit(engine.render_chat(messages), SamplingParams(max_tokens=max_tokens, temperature=0))
    async for event in handle.events():
        if isinstance(event, Finished):
            return event


def kv_positions(engine, seq_id: int) -> tuple[int, int]:
    memory = engine.context.memory
    llama_cpp = engine.llama_cpp
    return llama_cpp.llama_memory_seq_pos_min(memory, seq_id), llama_cpp.llama_memory_seq_pos_max(memory, seq_id)


def assert_slots_match_the_kv_cache(engine):
    for slot in engine.slots:
        if slot.tokens:
            assert kv_positions(engine, slot.seq_id) == (0, len(slot.tokens) - 1)
        else:
            assert kv_positions(engine, slot.seq_id) == (-1, -1)


def test_conversations_side_by_side_keep_exact_caches(engine):
    async def scenario():
        history = {"a": [], "b": []}
        for turn in range(3):
            finished = await asyncio.gather(*(
                generate(engine, history[name] + [{"role": "user", "content": f"{name} says {turn}"}])
                for name in history))
            for name, done in zip(history, finished):
                history[name] += [{"role": "user", "content": f"{name} says {turn}"},
                                  {"role": "assistant", "content": done.text}]
                if turn:
                    assert done.cached_tokens > 30  # more than the shared system prompt
            assert_slots_match_the_kv_cache(engine)
        return history

    history = asyncio.run(scenario())
    prompts = {name: engine.render_chat(h) for name, h in history.items()}
    for slot in engine.slots:  # each cache is a prefix of its own conversation, and of no other
        if len(slot.tokens) > 40:
            owners = [name for name, prompt in prompts.items() if prompt[:len(slot.tokens)] == slot.tokens]
            assert len(owners) <= 1


def test_a_new_conversation_leaves_another_ones_cache_whole(engine):
    """Conversations one after the other, with the same system prompt: the second borrows that
    prefix by copy, and the first keeps its whole cache for its next turn. A short conversation
    shares more than half its tokens with any other, which once cost it its cache (CI, seen when
    the second request arrived after the first had finished)."""
    async def scenario():
        first = [{"role": "user", "content": "c says 0"}]
        done = await generate(engine, first)
        await generate(engine, [{"role": "user", "content": "d says 0"}])
        first += [{"role": "assistant", "content": done.text}, {"role": "user", "content": "c says 1"}]
        return done, await generate(engine, first)

    done, again = asyncio.run(scenario())
    assert again.cached_tokens >= done.prompt_tokens
    assert_slots_match_the_kv_cache(engine)


def test_a_prompt_that_diverges_from_a_cache_is_cut_back_to_the_common_prefix(engine):
    async def scenario():
        base = [{"role": "user", "content": "Tell me about rivers."}]
        await generate(engine, base)
        edited = [{"role": "user", "content": "Tell me about mountains."}]
        return await generate(engine, edited)

    finished = asyncio.run(scenario())
    prompt = engine.render_chat([{"role": "user", "content": "Tell me about mountains."}])
    rivers = engine.render_chat([{"role": "user", "content": "Tell me about rivers."}])
    common = next(i for i, (x, y) in enumerate(zip(prompt, rivers)) if x != y)
    assert finished.cached_tokens <= common
    assert_slots_match_the_kv_cache(engine)


def test_a_batch_larger_than_llama_cpps_sequences_is_served_not_hung():
    """llama.cpp holds at most 256 sequences: --max-batch-size 300 used to admit a 257th request,
    find no slot, and kill the inference thread, after which every request waited for ever."""
    from pure_model_api.engine.base import EngineOptions
    from pure_model_api.engine.llamacpp.engine import MAX_SEQUENCES, LlamaCppEngine

    engine = LlamaCppEngine.load(EngineOptions(model="demo", engine="llama.cpp", max_batch_size=300, max_queue=16,
                                               kv_token_budget=16384))
    try:
        async def many():
            prompt = engine.encode("Hello")
            handles = [engine.submit(prompt, SamplingParams(max_tokens=2, temperature=0))
                       for _ in range(MAX_SEQUENCES + 20)]

            async def last(handle):
                async for event in handle.events():
                    if isinstance(event, Finished):
                        return event

            return await asyncio.wait_for(asyncio.gather(*(last(h) for h in handles)), 120)

        finished = asyncio.run(many())
        assert len(finished) == MAX_SEQUENCES + 20 and all(f.completion_tokens >= 1 for f in finished)
        assert engine.health() is None and engine.stats().max_batch_size == MAX_SEQUENCES
    finally:
        engine.close()


def test_background_warm_ups_queue_within_a_bound_newest_kept(engine):
    prompts = [engine.render_chat([{"role": "user", "content": f"Note {i}: " + "words " * 20}]) for i in range(40)]
    with engine.wakeup:  # the inference thread waits here, as it would behind users' requests
        for prompt in prompts:
            engine.warm(prompt)
        queued = [s.prompt_ids for s in engine.waiting if s.background]
    assert queued == prompts[-2 * engine.max_running:]
    asyncio.run(generate(engine, [{"role": "user", "content": "Hello"}]))  # still serves, queue drains
