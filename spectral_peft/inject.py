"""Put spectral adapters into a model, merge them out, and count what trains.

    model = AutoModel.from_pretrained(...)
    inject(model, SpectralConfig(basis="dht", selector="mixed", delta=0.7, n=1000,
                                 target_modules=["query", "value"]))
    ...train...
    plain = merge_and_unload(model)
"""

from __future__ import annotations

import torch
from torch import nn

from .adapter import SpectralAdapter, is_conv1d
from .config import SpectralConfig, module_matches
from .selection import choose_positions

CONFIG_ATTRIBUTE = "spectral_peft_config"


def adapters(model: nn.Module) -> dict[str, SpectralAdapter]:
    """The model's spectral adapters by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, SpectralAdapter)}


def get_config(model: nn.Module) -> SpectralConfig:
    """The :class:`SpectralConfig` a model was injected with."""
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    if config is None:
        raise ValueError("this model has no spectral adapters; call inject(model, config) first")
    return config


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (n per adapted layer after :func:`inject`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def find_targets(model: nn.Module, config: SpectralConfig) -> dict[str, nn.Module]:
    """The modules ``config.target_modules`` selects (minus ``exclude_modules``), checked to be linear."""
    targets = {}
    for name, module in model.named_modules():
        if not name or not module_matches(name, config.target_modules):
            continue
        if config.exclude_modules is not None and module_matches(name, config.exclude_modules):
            continue
        if not (isinstance(module, nn.Linear) or is_conv1d(module)):
            raise TypeError(
                f"target_modules={config.target_modules!r} matches {name!r}, a {type(module).__name__}; "
                "spectral adapters only wrap nn.Linear (or transformers Conv1D) layers — name the linear "
                "layers themselves"
            )
        targets[name] = module
    if not targets:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) or is_conv1d(m)]
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(
            f"target_modules={config.target_modules!r} (exclude_modules={config.exclude_modules!r}) matches no "
            f"module. Linear layers in this model end in: {', '.join(suffixes) or '(none)'}; "
            f"e.g. {', '.join(linear[:5]) or '(none)'}"
        )
    return targets


def inject(
    model: nn.Module, config: SpectralConfig, positions: dict[str, torch.Tensor] | None = None, calibration=None
) -> nn.Module:
    """Replace the targeted linear layers of ``model`` by :class:`SpectralAdapter` in place.

    Every parameter of ``model`` is frozen except the adapters' ``coefficients``. Returns ``model``.

    Args:
        model: any ``nn.Module`` (a Hugging Face model, a plain stack of layers, ...).
        config: what to inject where.
        positions: optional precomputed positions per layer name (used by :func:`load_adapters`,
            or from :func:`~spectral_peft.selection.preview_positions`); by default they are chosen
            by the configured selector.
        calibration: batches (or a :class:`~spectral_peft.selection.Calibration`) for selectors that
            choose positions from data (``gradient``, ``learned``); ignored by the others.
    """
    if not isinstance(config, SpectralConfig):
        raise TypeError(f"config must be a SpectralConfig, got {type(config).__name__}")
    if adapters(model):
        raise ValueError(
            "this model already has spectral adapters; injecting twice would stack them. "
            "Call merge_and_unload(model) first, or load a fresh model"
        )
    targets = find_targets(model, config)
    if positions is None:
        positions = choose_positions(model, targets, config, calibration)
    elif set(positions) != set(targets):
        raise ValueError(
            f"positions are given for layers {sorted(positions)} but the config targets {sorted(targets)}"
        )
    basis = config.build_basis()
    for param in model.parameters():
        param.requires_grad_(False)
    for name, layer in targets.items():
        _set_submodule(model, name, SpectralAdapter(layer, basis, positions[name], config.alpha))
    setattr(model, CONFIG_ATTRIBUTE, config)
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight and put the plain layer back; returns ``model``.

    The result is an ordinary model (no adapter code runs) whose outputs equal the adapted model's.
    """
    found = adapters(model)
    if not found:
        raise ValueError("this model has no spectral adapters to merge")
    for name, adapter in found.items():
        if not adapter.merged:
            adapter.merge()
        _set_submodule(model, name, adapter.base_layer)
    if hasattr(model, CONFIG_ATTRIBUTE):
        delattr(model, CONFIG_ATTRIBUTE)
    return model


def set_route(model: nn.Module, route: str) -> nn.Module:
    """Force how every spectral adapter of ``model`` computes its forward/backward pass.

    ``route`` is one of ``spectral_peft.fastpath.ROUTES``: ``"auto"`` (the default: chosen per layer
    by shape and token count), ``"reference"``, ``"dense"``, ``"merged"`` or ``"sparse"``. All routes
    are exact; the choice only changes speed and memory. Returns ``model``.
    """
    from .fastpath.plan import ROUTES

    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    found = adapters(model)
    if not found:
        raise ValueError("this model has no spectral adapters")
    for adapter in found.values():
        adapter.route = route
    return model


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
