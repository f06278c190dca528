"""Transforms of an input that several adapters read, computed once per backward pass.

The query, key and value projections of an attention block read one input x. On the merged route
each one's coefficient gradient needs x̂ = right(x) over the same tokens, and where their bases and
widths agree (one shared operator) that is the same array: the first of them to run its backward
keeps it, the others read it, and the last one drops it. Forward passes count the readers of x
(:meth:`SharedTransforms.read`), backward passes take x̂ through :meth:`SharedTransforms.apply_blocks`
and say when they are done (:meth:`SharedTransforms.done`). An input with one reader is never kept.
Entries are keyed weakly by the input tensor, so an input that is freed (a forward pass without a
backward, an interrupted backward) takes its entry with it; the tensor's version is part of the
key, so an in-place change is never served a stale transform.
"""

from __future__ import annotations

from torch.utils.weak import WeakTensorKeyDictionary

from ..tensor_version import version


class _Entry:
    __slots__ = ("readers", "transforms")

    def __init__(self):
        self.readers = 0
        self.transforms: dict = {}


class SharedTransforms:
    """Counts the adapters that read each input and keeps x̂ between their backward passes."""

    def __init__(self):
        self._inputs = WeakTensorKeyDictionary()

    def read(self, x) -> None:
        """A forward pass read ``x``: one more backward pass will need its transform."""
        entry = self._inputs.get(x)
        if entry is None:
            entry = self._inputs[x] = _Entry()
        entry.readers += 1

    def apply_blocks(self, x, op, chunk: slice, x_chunk) -> list:
        """``op.apply_blocks(x_chunk)`` for the rows ``chunk`` of ``x``, kept for the other readers."""
        entry = self._inputs.get(x)
        if entry is None:
            return op.apply_blocks(x_chunk)
        key = (op, chunk.start, chunk.stop, x_chunk.dtype, version(x))
        blocks = entry.transforms.get(key)
        if blocks is None:
            blocks = op.apply_blocks(x_chunk)
            if entry.readers > 1:
                entry.transforms[key] = blocks
        return blocks

    def done(self, x) -> None:
        """A backward pass no longer needs ``x``'s transform; the last one frees it."""
        entry = self._inputs.get(x)
        if entry is None:
            return
        entry.readers -= 1
        if entry.readers <= 0:
            del self._inputs[x]

    def __len__(self) -> int:
        return len(self._inputs)


#: The one registry of the training routes (autograd runs a device's backward on one thread).
SHARED = SharedTransforms()
