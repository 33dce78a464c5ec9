"""Next-token choice for a batch whose rows each carry their own sampling parameters."""

from __future__ import annotations

import torch

from pure_model_api.engine.params import SamplingParams


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def apply_penalties(logits: torch.Tensor, params: SamplingParams, prompt_ids: torch.Tensor,
                    reply_ids: list[int]) -> torch.Tensor:
    """Repetition penalty (prompt and reply, as transformers does it), presence and frequency (reply only)."""
    if params.repetition_penalty != 1.0:
        seen = torch.cat([prompt_ids, torch.tensor(reply_ids, dtype=torch.long)]).to(logits.device)
        scores = logits[seen]
        scores = torch.where(scores < 0, scores * params.repetition_penalty, scores / params.repetition_penalty)
        logits = logits.scatter(0, seen, scores)
    if reply_ids and (params.presence_penalty or params.frequency_penalty):
        ids, counts = torch.tensor(reply_ids, dtype=torch.long).unique(return_counts=True)
        ids = ids.to(logits.device)
        penalty = params.presence_penalty + params.frequency_penalty * counts.to(logits.device, logits.dtype)
        logits = logits.index_put((ids,), -penalty, accumulate=True)
    return logits


def sample_row(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """One row: temperature, top-k, top-p, then a draw from the row's own generator."""
    if params.greedy:
        return int(torch.argmax(logits))
    logits = logits.float() / params.temperature
    if params.top_k > 0 and params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > params.top_p  # always keeps the most likely token
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def choose_next_tokens(logits: torch.Tensor, rows: list) -> list[int]:
    """`logits` is [batch, vocab]; `rows` are the running requests, in batch order.

    A batch of plain greedy rows takes one argmax; any other row is handled on its own."""
    if all(row.params.greedy and not row.params.needs_penalties for row in rows):
        return torch.argmax(logits, dim=-1).tolist()
    chosen = []
    for index, row in enumerate(rows):
        row_logits = logits[index]
        if row.params.needs_penalties:
            row_logits = apply_penalties(row_logits, row.params, row.prompt_tensor, row.reply_ids)
        chosen.append(sample_row(row_logits, row.params, row.generator))
    return chosen
