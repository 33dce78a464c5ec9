"""Next-token choice for a batch whose rows each carry their own sampling parameters.

NumPy on the CPU, shared by the engines that sample in this process: llama.cpp hands over its
logits as NumPy rows (so serving a GGUF file needs no torch), and the transformers engine moves a
row to the CPU only when it is not plain greedy (it draws on the CPU either way).
"""

from __future__ import annotations

import numpy as np

from pure_model_api.engine.params import SamplingParams


def make_generator(seed: int | None) -> np.random.Generator:
    """A row's own generator. Seeds are any int64, as on vLLM; NumPy takes non-negative ones, so a
    seed is read modulo 2**64 (distinct int64 seeds stay distinct)."""
    return np.random.default_rng(None if seed is None else seed % 2**64)


def plain_greedy(rows: list) -> bool:
    """Every row greedy, with no penalties, grammar or log-probabilities: the batch takes one argmax,
    wherever its logits are."""
    return all(row.params.greedy and not row.params.needs_penalties and row.constraint is None
               and row.params.logprobs is None for row in rows)


def token_logprobs(logits: np.ndarray, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
    """`token`'s log-probability under one row of raw logits, and the `top` likeliest (id, log-probability)."""
    row = logits.astype(np.float64)
    shifted = row - row.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    ids = np.argpartition(-logprobs, top)[:top] if 0 < top < logprobs.size else np.arange(min(top, logprobs.size))
    ids = ids[np.argsort(-logprobs[ids], kind="stable")]
    return float(logprobs[token]), [(int(i), float(logprobs[i])) for i in ids]


def apply_penalties(logits: np.ndarray, params: SamplingParams, prompt_ids: list[int],
                    reply_ids: list[int]) -> np.ndarray:
    """Repetition penalty (prompt and reply, as transformers does it), presence and frequency (reply only)."""
    logits = logits.astype(np.float32, copy=True)
    if params.repetition_penalty != 1.0:
        seen = np.asarray(prompt_ids + reply_ids, dtype=np.int64)  # repeats write the same value: no sort
        scores = logits[seen]
        logits[seen] = np.where(scores < 0, scores * params.repetition_penalty, scores / params.repetition_penalty)
    if reply_ids and (params.presence_penalty or params.frequency_penalty):
        ids, counts = np.unique(np.asarray(reply_ids, dtype=np.int64), return_counts=True)
        logits[ids] -= params.presence_penalty + params.frequency_penalty * counts
    return logits


def sample_row(logits: np.ndarray, params: SamplingParams, generator: np.random.Generator) -> int:
    """One row: temperature, top-k, top-p, then a draw from the row's own generator."""
    if params.greedy:
        return int(np.argmax(logits))
    logits = logits.astype(np.float64) / params.temperature
    if 0 < params.top_k < logits.size:
        kth = np.partition(logits, -params.top_k)[-params.top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        sorted_probs = probs[order]
        drop = np.cumsum(sorted_probs) - sorted_probs > params.top_p  # always keeps the most likely token
        probs = np.zeros_like(probs)
        probs[order[~drop]] = sorted_probs[~drop]
        probs /= probs.sum()
    return int(generator.choice(probs.size, p=probs))


def choose_next_tokens(logits: np.ndarray, rows: list) -> list[int]:
    """`logits` is [batch, vocab]; `rows` are the running requests, in batch order."""
    if plain_greedy(rows):
        return np.argmax(logits, axis=-1).tolist()
    chosen = []
    for index, row in enumerate(rows):
        row_logits = raw = logits[index]
        if row.params.needs_penalties:
            row_logits = apply_penalties(row_logits, row.params, row.prompt_ids, row.reply_ids)
        if row.constraint is not None:  # after the penalties, so they choose among allowed tokens only
            row_logits = row.constraint.mask(row_logits)
        token = sample_row(row_logits, row.params, row.generator)
        if row.params.logprobs is not None:  # the model's own distribution, as vLLM reports by default
            row.token_logprob = token_logprobs(raw, token, row.params.logprobs)
        chosen.append(token)
    return chosen
