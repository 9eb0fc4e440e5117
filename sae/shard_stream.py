"""Shuffled token streams over activation shards, reproducible from (seed, stream, position) alone.

The tokens are cut into blocks (``block_tokens`` consecutive rows of one file). Each epoch the blocks
are permuted with the seed; stream ``s`` of ``S`` takes every S-th block of that order, so streams read
disjoint blocks (ranks read their own data). A stream loads ``buffer_blocks`` blocks at a time and
shuffles their tokens together (shuffling across shards with memory bounded by the buffer). The
order depends only on the seed, the number of streams and the block layout, never on the number of
processes: a run with 2 ranks × 1 stream sees the same tokens per step as 1 process × 2 streams, and
a resumed run finds its place from the step count (no data-loader state to save).
"""
from __future__ import annotations

import hashlib

import torch

from .activation_shards import ActivationShards


def _generator(*parts: int) -> torch.Generator:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def token_blocks(shards: ActivationShards, block_tokens: int) -> list[tuple[int, int, int]]:
    """(file index, start, stop) for every block; blocks never cross files."""
    return [(i, start, min(start + block_tokens, f.tokens))
            for i, f in enumerate(shards.files) for start in range(0, f.tokens, block_tokens)]


class ShardStream:
    """Stream ``stream`` of ``streams``: ``take(n)`` returns its next ``n`` tokens [n, d_in] (stored dtype)."""

    def __init__(self, shards: ActivationShards, stream: int, streams: int, seed: int, block_tokens: int = 8192,
                 buffer_blocks: int = 8):
        if block_tokens < 1 or buffer_blocks < 1:
            raise ValueError(f"block_tokens ({block_tokens}) and buffer_blocks ({buffer_blocks}) must be ≥ 1")
        self.shards, self.stream, self.streams, self.seed = shards, stream, streams, seed
        self.blocks = token_blocks(shards, block_tokens)
        if len(self.blocks) < streams:
            raise ValueError(f"{shards.folder}: {len(self.blocks)} blocks of {block_tokens} tokens cannot feed "
                             f"{streams} streams; use fewer streams or a smaller block size")
        self.buffer_blocks = buffer_blocks
        self.epoch, self.group, self.offset = 0, 0, 0
        self._buffer: torch.Tensor | None = None

    def _groups(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        order = torch.randperm(len(self.blocks), generator=_generator(self.seed, epoch)).tolist()
        mine = [self.blocks[i] for i in order[self.stream::self.streams]]
        return [mine[i:i + self.buffer_blocks] for i in range(0, len(mine), self.buffer_blocks)]

    def _load(self) -> torch.Tensor:
        group = self._groups(self.epoch)[self.group]
        tokens = torch.cat([self.shards.read(*block) for block in group])
        order = torch.randperm(tokens.shape[0], generator=_generator(self.seed, self.stream, self.epoch, self.group))
        return tokens[order]

    def _advance_group(self) -> None:
        self._buffer, self.offset = None, 0
        self.group += 1
        if self.group >= len(self._groups(self.epoch)):
            self.epoch, self.group = self.epoch + 1, 0

    def seek(self, position: int) -> None:
        """Jump to the stream's ``position``-th token (counting from the start of epoch 0) without reading data."""
        self.epoch, self.group, self.offset, self._buffer = 0, 0, 0, None
        while position > 0:
            groups = self._groups(self.epoch)
            size = sum(stop - start for _, start, stop in groups[self.group])
            if position < size:
                self.offset = position
                return
            position -= size
            self._advance_group()

    def take(self, n: int) -> torch.Tensor:
        parts = []
        while n > 0:
            if self._buffer is None:
                self._buffer = self._load()
            part = self._buffer[self.offset:self.offset + n]
            parts.append(part)
            n -= part.shape[0]
            self.offset += part.shape[0]
            if self.offset >= self._buffer.shape[0]:
                self._advance_group()
        return parts[0] if len(parts) == 1 else torch.cat(parts)
