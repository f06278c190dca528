"""Save and load only what an adapter learned: coefficients, positions and the config.

A saved adapter is a folder with ``adapter_config.json`` (the :class:`SpectralConfig`, the
adapted layers with their shapes, and the package version) and ``adapter_model.safetensors``
(``<layer>.coefficients`` and ``<layer>.positions`` per adapted layer). Loading injects into a
freshly loaded base model with the stored positions (never re-selected, since energy-based
selection depends on the weights) and copies the coefficients in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .adapter import linear_weight_shape
from .config import SpectralConfig
from .inject import adapters, find_targets, get_config, inject

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 1


def save_adapters(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapters of ``model`` into the folder ``path`` (created if needed); returns it."""
    from . import __version__

    found = adapters(model)
    if not found:
        raise ValueError("this model has no spectral adapters to save")
    if any(a.merged for a in found.values()):
        raise ValueError("unmerge the adapters before saving (merged weights are not part of an adapter)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {}
    layers = {}
    for name, adapter in found.items():
        tensors[f"{name}.coefficients"] = adapter.coefficients.detach().cpu().contiguous()
        tensors[f"{name}.positions"] = adapter.positions.detach().cpu().contiguous()
        layers[name] = {"shape": [adapter.out_features, adapter.in_features], "n": adapter.n}
    save_file(tensors, str(path / WEIGHTS_FILE))
    meta = {
        "format_version": FORMAT_VERSION,
        "spectral_peft_version": __version__,
        "config": get_config(model).to_dict(),
        "layers": layers,
    }
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Inject the adapters saved in ``path`` into ``model`` (a fresh base model); returns ``model``.

    Raises ``ValueError`` if the model's targeted layer names or shapes differ from the saved ones.
    """
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} does not hold a saved adapter ({CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((path / CONFIG_FILE).read_text())
    config = SpectralConfig.from_dict(meta["config"])
    saved = meta["layers"]
    targets = find_targets(model, config)
    if set(targets) != set(saved):
        missing, extra = sorted(set(saved) - set(targets)), sorted(set(targets) - set(saved))
        raise ValueError(
            f"the model's layers do not match the saved adapter: saved but not in the model: {missing}; "
            f"in the model but not saved: {extra}"
        )
    for name, layer in targets.items():
        shape = list(linear_weight_shape(layer))
        if shape != saved[name]["shape"]:
            raise ValueError(f"layer {name!r} is {shape[0]}x{shape[1]} but the saved adapter is for {saved[name]['shape']}")
    tensors = load_file(str(path / WEIGHTS_FILE))
    inject(model, config, positions={name: tensors[f"{name}.positions"] for name in saved})
    with torch.no_grad():
        for name, adapter in adapters(model).items():
            adapter.coefficients.copy_(tensors[f"{name}.coefficients"])
    return model
