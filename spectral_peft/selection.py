"""Choosing the positions: what a selector sees, calibration data, and :func:`preview_positions`.

A selector ranks the M·N positions of each target layer by a score map (energy |B(W0)|², an
accumulated gradient spectrum, a stored update's spectrum, learned scores, a frequency map …) and
picks n of them. Selectors that look at data get it as :class:`Calibration`: batches plus a loss::

    batches = [{"input_ids": ..., "attention_mask": ..., "labels": ...}, ...]
    inject(model, SpectralConfig(selector="gradient", n=768), calibration=batches)
    # or with any batch format:
    inject(model, config, calibration=Calibration(batches, loss_fn=lambda m, b: my_loss(m, b)))
    # what inject would choose, without injecting (the model is left exactly as it was):
    positions = preview_positions(model, config, calibration=batches)
    inject(model, config, positions=positions)

Selectors that need no data ignore ``calibration``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .adapter import is_conv1d, linear_weight_shape
from .bases import SpectralBasis
from .config import SpectralConfig
from .selectors import check_count

__all__ = ["Calibration", "SelectionContext", "choose_positions", "default_loss", "layer_seed", "preview_positions"]


def default_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """``model(**batch).loss`` for a mapping batch (Hugging Face models given ``labels``)."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"the default calibration loss needs mapping batches (model(**batch).loss), got a "
            f"{type(batch).__name__}; pass Calibration(batches, loss_fn=lambda model, batch: ...)"
        )
    out = model(**batch)
    loss = out.get("loss") if isinstance(out, Mapping) else getattr(out, "loss", None)
    if loss is None:
        raise ValueError(
            "model(**batch) returned no loss (give the batches 'labels', or pass "
            "Calibration(batches, loss_fn=lambda model, batch: ...))"
        )
    return loss


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Data for selectors that choose positions from it (``gradient``, ``learned``).

    Attributes:
        batches: the batches, iterated in order (possibly several times); stored as a tuple.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; default :func:`default_loss`.
    """

    batches: tuple
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] = default_loss

    def __post_init__(self):
        object.__setattr__(self, "batches", tuple(self.batches))
        if not self.batches:
            raise ValueError("calibration needs at least one batch")
        if not callable(self.loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), got {self.loss_fn!r}")

    @classmethod
    def of(cls, data) -> "Calibration | None":
        """``None``, a :class:`Calibration`, or an iterable of batches (with :func:`default_loss`)."""
        if data is None or isinstance(data, Calibration):
            return data
        if isinstance(data, (torch.Tensor, Mapping, str)) or not isinstance(data, Iterable):
            raise TypeError(
                "calibration must be a Calibration or an iterable of batches (a list of dicts, ...), "
                f"got {type(data).__name__}"
            )
        return cls(tuple(data))

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        loss = self.loss_fn(model, batch)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"the calibration loss must be a scalar tensor, got {loss!r}"[:200])
        return loss.reshape(())


def layer_seed(seed: int, key: str) -> int:
    """A stable per-layer seed derived from the config seed and the layer name (or shape key)."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63 - 1)


def dense_weight(layer: nn.Module) -> torch.Tensor:
    """W0 as an out × in float tensor (float32 unless the layer is float64), detached."""
    weight = layer.weight.detach()
    weight = weight.T if is_conv1d(layer) else weight
    return weight.to(torch.promote_types(weight.dtype, torch.float32))


@dataclasses.dataclass
class SelectionContext:
    """Everything a selector may look at to score the positions of the target layers."""

    model: nn.Module
    targets: dict[str, nn.Module]
    basis: SpectralBasis
    config: SpectralConfig
    calibration: Calibration | None

    def shape(self, name: str) -> tuple[int, int]:
        return linear_weight_shape(self.targets[name])

    def weight(self, name: str) -> torch.Tensor:
        return dense_weight(self.targets[name])

    def require_calibration(self, selector: str) -> Calibration:
        if self.calibration is None:
            raise ValueError(
                f"selector {selector!r} chooses positions from data: pass calibration batches, e.g. "
                "inject(model, config, calibration=batches) or preview_positions(model, config, calibration=batches)"
            )
        return self.calibration

    @contextlib.contextmanager
    def frozen_model(self):
        """Everything frozen and in eval mode (no dropout: deterministic); restored on exit,
        including ``requires_grad``, existing ``.grad`` values and the training flags."""
        model = self.model
        flags = {p: (p.requires_grad, p.grad) for p in model.parameters()}
        modes = {m: m.training for m in model.modules()}
        try:
            for p in flags:
                p.requires_grad_(False)
                p.grad = None
            model.eval()
            yield
        finally:
            for p, (requires_grad, grad) in flags.items():
                p.requires_grad_(requires_grad)
                p.grad = grad
            for m, training in modes.items():
                m.training = training

    def weight_gradients(self, batches: int | None = None):
        """Yield ``{name: ∂L/∂W0}`` (out × in, float) for each calibration batch in turn."""
        calibration = self.require_calibration("gradient")
        with self.frozen_model():
            for layer in self.targets.values():
                layer.weight.requires_grad_(True)
            for batch in calibration.batches[:batches]:
                for layer in self.targets.values():
                    layer.weight.grad = None
                calibration.loss(self.model, batch).backward()
                grads = {}
                for name, layer in self.targets.items():
                    grad = layer.weight.grad
                    if grad is None:
                        raise ValueError(f"the calibration loss does not depend on layer {name!r}")
                    grad = grad.T if is_conv1d(layer) else grad
                    grads[name] = grad.detach().to(torch.promote_types(grad.dtype, torch.float32))
                yield grads


def choose_positions(
    model: nn.Module, targets: dict[str, nn.Module], config: SpectralConfig, calibration=None
) -> dict[str, torch.Tensor]:
    """Chosen flat positions per target layer (see ``SpectralConfig.share_positions``)."""
    basis, selector = config.build_basis(), config.build_selector()
    shapes = {name: linear_weight_shape(m) for name, m in targets.items()}
    for name, shape in shapes.items():
        try:
            basis.check_shape(*shape)
            check_count(config.n, shape)
        except ValueError as err:
            raise ValueError(f"layer {name!r} ({shape[0]}x{shape[1]}): {err}") from err
    context = SelectionContext(model, targets, basis, config, Calibration.of(calibration))
    scores = selector.layer_scores(context)

    def summed(names: list[str]) -> torch.Tensor | None:
        if scores is None:
            return None
        total = None
        for name in names:
            total = scores[name] if total is None else total + scores[name]
        return total

    if not config.share_positions:
        return {
            name: selector.select(
                summed([name]), shapes[name], config.n, torch.Generator().manual_seed(layer_seed(config.seed, name))
            )
            for name in targets
        }
    groups: dict[tuple[int, int], list[str]] = {}
    for name, shape in shapes.items():
        groups.setdefault(shape, []).append(name)
    positions = {}
    for shape, names in groups.items():
        # the same generator state for every shape, exactly as FourierFT draws its shared positions
        chosen = selector.select(summed(names), shape, config.n, torch.Generator().manual_seed(config.seed))
        positions.update({name: chosen for name in names})
    return positions


def preview_positions(model: nn.Module, config: SpectralConfig, calibration=None) -> dict[str, torch.Tensor]:
    """The positions ``inject(model, config, calibration=calibration)`` would choose, per layer name.

    Sorted flat row-major indices (q = u·N + v into the out × in coefficient matrix). The model is
    not modified (selectors that run it restore its parameters' flags, gradients and modes).
    Pass the result to ``inject(model, config, positions=...)`` to inject exactly these.
    """
    from .inject import find_targets

    if not isinstance(config, SpectralConfig):
        raise TypeError(f"config must be a SpectralConfig, got {type(config).__name__}")
    return choose_positions(model, find_targets(model, config), config, calibration)
