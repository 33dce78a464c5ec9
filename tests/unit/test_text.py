import pytest

from pure_model_api.engine.text import IncrementalDecoder, StopStringFilter


@pytest.fixture(scope="module")
def tokenizer():
    from helpers import demo_model_dir
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir())


@pytest.mark.parametrize("text", ["你好！世界", "emoji 👋🏽 and ünïcödé", "plain words, spaced"])
def test_deltas_never_split_a_character(tokenizer, text):
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(t) for t in tokenizer.encode(text, add_special_tokens=False)]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len([d for d in deltas if d]) > 1  # it really streamed


def test_stop_string_split_across_deltas_is_cut_and_not_returned():
    stop = StopStringFilter(("END",))
    out = [stop.push("the answer E"), stop.push("N"), stop.push("D and more")]
    assert "".join(out) == "the answer "
    assert stop.stopped


def test_near_miss_is_released():
    stop = StopStringFilter(("END",))
    out = stop.push("the EN") + stop.push("ergy")
    assert out == "the ENergy" and not stop.stopped


def test_held_text_is_flushed_at_the_end():
    stop = StopStringFilter(("###",))
    assert stop.push("done #") == "done "
    assert stop.flush() == "#"


def test_earliest_of_several_stops_wins():
    stop = StopStringFilter(("b", "a"))
    assert stop.push("xxabc") == "xx"


@pytest.mark.parametrize("text", ["the end is \ufffd", "\ufffd" * 300 + " after"])
def test_a_reply_that_writes_the_replacement_character_gets_all_of_it(tokenizer, text):
    """U+FFFD written by the model (not a half character) is text like any other: the reply ends
    with it, and a long run of it is not held back (re-decoded at every token) but streamed."""
    from pure_model_api.engine.params import SamplingParams
    from pure_model_api.engine.requests import Sequence, accept_token

    events = []
    sequence = Sequence([1, 2, 3], SamplingParams(max_tokens=10_000), events.append, tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    held = []
    for token in ids:
        accept_token(sequence, token, eos_ids=set(), context_length=100_000)
        held.append(len(sequence.decoder.ids) - sequence.decoder.prefix_offset)
    sequence.finish("stop")
    assert events[-1].text == text
    assert "".join(e.text for e in events[:-1]) == text
    assert max(held) <= 2 * IncrementalDecoder.MAX_HELD  # the decoding window stays small
