"""Frozen work done once: token ids per split, and hidden states entering the first trained layer.

When every trainable parameter sits in blocks ``L..`` (adapters in the upper blocks, or head-only
training with ``L = num_layers``), the embeddings and blocks ``0..L-1`` compute the same thing in
every run and every epoch. :class:`FeatureCache` computes them once per (backbone weights and
dtype, tokenized split, L), on the model's device, and hands out right-padded batches. Entries
live in memory and, with ``disk_dir``, also on disk as ``<sha256 key>.pt`` so a resumed study does
not recompute them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .atomic import replacing

import torch

__all__ = ["FeatureCache", "HiddenView", "TokenView"]


@dataclass
class TokenView:
    """Batches of token ids (no caching: the forward starts at the embeddings)."""

    ids: torch.Tensor
    mask: torch.Tensor
    layer = None

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)

    def batch(self, index: torch.Tensor):
        mask = self.mask[index]
        width = int(mask.sum(1).max())
        return self.ids[index, :width], mask[:, :width]


@dataclass
class HiddenView:
    """Batches of cached hidden states entering block ``layer`` (final states if ``layer == num_layers``).

    Stored unpadded: ``flat`` holds every example's real tokens back to back.
    """

    flat: torch.Tensor  # (total tokens, hidden)
    lengths: torch.Tensor  # (examples,)
    offsets: torch.Tensor  # (examples,)
    layer: int

    def __len__(self) -> int:
        return self.lengths.shape[0]

    def batch(self, index: torch.Tensor):
        lengths = self.lengths[index]
        width = int(lengths.max())
        out = self.flat.new_zeros(len(index), width, self.flat.shape[1])
        mask = torch.zeros(len(index), width, dtype=torch.long, device=self.flat.device)
        for row, (i, n) in enumerate(zip(index.tolist(), lengths.tolist())):
            out[row, :n] = self.flat[self.offsets[i] : self.offsets[i] + n]
            mask[row, :n] = 1
        return out, mask


class FeatureCache:
    def __init__(self, disk_dir: str | Path | None = None, chunk_size: int = 128):
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self.chunk_size = chunk_size
        self._mem: dict[str, HiddenView] = {}
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    @staticmethod
    def key(fingerprint: str, tokens: TokenView, layer: int) -> str:
        """``fingerprint`` names the weights and everything else that changes the states (dtype)."""
        h = hashlib.sha256()
        h.update(f"{fingerprint}|{layer}|{tuple(tokens.ids.shape)}".encode())
        h.update(tokens.ids.numpy().tobytes())
        h.update(tokens.mask.numpy().tobytes())
        return h.hexdigest()

    def view(self, model, fingerprint: str, tokens: TokenView, layer: int | None):
        """A view whose batches feed ``model.forward_from(x, mask, layer)`` (``TokenView`` if layer is None)."""
        if layer is None:
            return tokens
        key = self.key(fingerprint, tokens, layer)
        if key in self._mem:
            self.hits += 1
            return self._mem[key]
        path = self.disk_dir / f"{key[:32]}.pt" if self.disk_dir else None
        if path is not None and path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True)
            device = next(model.parameters()).device
            view = HiddenView(data["flat"].to(device), data["lengths"], data["offsets"], layer)
            self.disk_hits += 1
        else:
            view = self._compute(model, tokens, layer)
            self.misses += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with replacing(path) as tmp:
                    torch.save({"flat": view.flat.cpu(), "lengths": view.lengths, "offsets": view.offsets}, tmp)
        self._mem[key] = view
        return view

    @torch.no_grad()
    def _compute(self, model, tokens: TokenView, layer: int) -> HiddenView:
        was_training = model.training
        model.eval()
        lengths = tokens.mask.sum(1)
        pieces: list = [None] * len(tokens)
        order = torch.sort(lengths, stable=True).indices  # similar lengths together: little padding
        device = next(model.parameters()).device
        for index in order.split(self.chunk_size):
            ids, mask = tokens.batch(index)
            hidden = model.hidden_at(ids.to(device), mask.to(device), layer)
            for row, i in enumerate(index.tolist()):
                pieces[i] = hidden[row, : int(lengths[i])]
        model.train(was_training)
        offsets = torch.zeros_like(lengths)
        offsets[1:] = torch.cumsum(lengths, 0)[:-1]
        return HiddenView(torch.cat(pieces).contiguous(), lengths.clone(), offsets, layer)

    def clear(self) -> None:
        self._mem.clear()
