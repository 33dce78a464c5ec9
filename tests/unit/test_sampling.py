import numpy as np
import pytest

from pure_model_api.engine.params import SamplingParams
from pure_model_api.engine.sampling import apply_penalties, make_generator, sample_row

LOGITS = np.array([1.0, 3.0, 2.5, 0.5, -1.0], dtype=np.float32)


def draws(params: SamplingParams, n: int = 200) -> set[int]:
    generator = make_generator(params.seed)
    return {sample_row(LOGITS, params, generator) for _ in range(n)}


def test_greedy_takes_the_most_likely_token():
    assert draws(SamplingParams(temperature=0.0)) == {1}


def test_top_k_one_and_a_tiny_top_p_are_greedy_too():
    assert draws(SamplingParams(temperature=1.0, top_k=1)) == {1}
    assert draws(SamplingParams(temperature=1.0, top_p=0.01)) == {1}


def test_top_k_limits_the_choice():
    assert draws(SamplingParams(temperature=5.0, top_k=2)) == {1, 2}
    assert len(draws(SamplingParams(temperature=5.0))) > 2


def test_a_seed_reproduces_the_draws():
    params = SamplingParams(temperature=1.5, seed=11)
    first, second = make_generator(11), make_generator(11)
    assert [sample_row(LOGITS, params, first) for _ in range(50)] == \
        [sample_row(LOGITS, params, second) for _ in range(50)]


@pytest.mark.parametrize("seed", [-(2**63), -1, 0, 2**63 - 1])
def test_any_int64_seed_reproduces_its_draws(seed):
    """The API takes any int64 seed; a negative one was a 500 (NumPy's generators want >= 0)."""
    params = SamplingParams(temperature=1.5, seed=seed)
    first, second = make_generator(seed), make_generator(seed)
    assert [sample_row(LOGITS, params, first) for _ in range(50)] == \
        [sample_row(LOGITS, params, second) for _ in range(50)]


def test_penalties_push_repeated_tokens_down():
    prompt = [0]
    repeated = apply_penalties(LOGITS, SamplingParams(frequency_penalty=1.0), prompt, [1, 1])
    assert int(np.argmax(repeated)) == 2  # token 1 lost 2.0: 3.0 -> 1.0
    present = apply_penalties(LOGITS, SamplingParams(presence_penalty=1.0), prompt, [1, 1])
    assert present[1] == 2.0 and present[2] == 2.5
    damped = apply_penalties(LOGITS, SamplingParams(repetition_penalty=2.0), prompt, [1])
    assert damped[1] == 1.5 and damped[0] == 0.5 and damped[2] == 2.5


def test_log_probabilities_are_the_raw_distributions_with_the_likeliest_first():
    from pure_model_api.engine.sampling import token_logprobs

    expected = LOGITS.astype(np.float64) - np.log(np.exp(LOGITS.astype(np.float64)).sum())
    chosen, top = token_logprobs(LOGITS, 3, 3)
    assert chosen == pytest.approx(expected[3])
    assert [i for i, _ in top] == [1, 2, 0]
    assert [v for _, v in top] == pytest.approx(expected[[1, 2, 0]])
    assert token_logprobs(LOGITS, 1, 0)[1] == [] and len(token_logprobs(LOGITS, 1, 99)[1]) == LOGITS.size
