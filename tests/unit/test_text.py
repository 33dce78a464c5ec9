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
