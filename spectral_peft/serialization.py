"""Save and load only what an adapter learned: coefficients, positions, ``modules_to_save`` and the config.

A saved adapter is a folder with ``adapter_config.json`` (the :class:`SpectralConfig`, the adapted
layers with their shapes, the saved modules and the package version) and
``adapter_model.safetensors`` (``<layer>.coefficients`` and ``<layer>.positions`` per adapted layer,
and the state of every ``modules_to_save`` module under its own names). The safetensors header
also carries a fingerprint (the config and every tensor's shape), so a config file edited or
swapped after saving is refused with the field that differs, instead of loading into a silently
different model.

Loading injects into a freshly loaded base model with the stored positions (never re-selected,
since energy-based selection depends on the weights) and copies the coefficients in; into a model
that already has matching adapters it only copies the coefficients (and says exactly what does
not match otherwise). Non-finite values are refused.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .adapter import linear_weight_shape
from .config import SpectralConfig
from .distributed import full_tensor, is_main_process, reshard
from .inject import _matching_modules, adapters, find_modules_to_save, find_targets, get_config, inject

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT_VERSION = 2
FINGERPRINT_KEY = "spectral_peft_fingerprint"


def save_adapters(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapters (and ``modules_to_save``) of ``model`` into the folder ``path``; returns it.

    On an FSDP2 (``fully_shard``) model call it on every rank: sharded tensors are gathered and rank 0
    writes the files.
    """
    from . import __version__

    found = adapters(model)
    if not found:
        raise ValueError("this model has no spectral adapters to save")
    if any(a.merged for a in found.values()):
        raise ValueError("unmerge the adapters before saving (merged weights are not part of an adapter)")
    config = get_config(model)
    reshard(model)
    tensors: dict[str, torch.Tensor] = {}
    layers = {}
    for name, adapter in found.items():
        tensors[f"{name}.coefficients"] = _to_file(adapter.coefficients)
        tensors[f"{name}.positions"] = _to_file(adapter.positions)
        layers[name] = {"shape": [adapter.out_features, adapter.in_features], "n": adapter.n}
    saved_modules = {}
    for module_name, module in find_modules_to_save(model, config, found).items():
        state = module.state_dict()
        saved_modules[module_name] = sorted(state)
        tensors.update({f"{module_name}.{key}": _to_file(value) for key, value in state.items()})
    config_dict = config.to_dict()
    fingerprint = {"config": config_dict, "shapes": {key: list(t.shape) for key, t in tensors.items()}}
    path = Path(path)
    if is_main_process():
        path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path / WEIGHTS_FILE),
                  metadata={"format": "pt", FINGERPRINT_KEY: json.dumps(fingerprint, sort_keys=True)})
        meta = {
            "format_version": FORMAT_VERSION,
            "spectral_peft_version": __version__,
            "config": config_dict,
            "layers": layers,
            "modules_to_save": saved_modules,
        }
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def _to_file(tensor: torch.Tensor) -> torch.Tensor:
    return full_tensor(tensor).detach().cpu().contiguous()


def load_adapters(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the adapter saved in ``path`` into ``model``; returns ``model``.

    ``model`` is either a fresh base model (the adapters are injected with the stored positions) or
    a model that already has adapters on the same layers with the same basis, α and positions (only
    the coefficients are copied). ``modules_to_save`` states are copied into the model's modules of
    the same names.

    Raises:
        FileNotFoundError: ``path`` holds no saved adapter.
        ValueError: the config file disagrees with the fingerprint in the weights file (naming the
            field), a stored value is NaN or infinite, or the model's layers, shapes or existing
            adapters differ from the saved ones (saying exactly what differs).
    """
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} does not hold a saved adapter ({CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = json.loads((path / CONFIG_FILE).read_text())
    with safe_open(str(path / WEIGHTS_FILE), framework="pt") as handle:
        header = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    _check_fingerprint(meta, header, tensors, path)
    config = SpectralConfig.from_dict(meta["config"])
    saved = meta["layers"]
    _check_finite(tensors, path)
    if adapters(model):
        _load_into_adapted(model, config, saved, tensors)
    else:
        _inject_saved(model, config, saved, tensors)
    _load_modules_to_save(model, meta.get("modules_to_save", {}), tensors)
    return model


def _inject_saved(model: nn.Module, config: SpectralConfig, saved: dict, tensors: dict) -> None:
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
    inject(model, config, positions={name: tensors[f"{name}.positions"] for name in saved})
    _copy_coefficients(model, tensors)


def _load_into_adapted(model: nn.Module, config: SpectralConfig, saved: dict, tensors: dict) -> None:
    """Copy coefficients into existing adapters after checking layer names, shapes, basis, α and positions."""
    found = adapters(model)
    basis = config.build_basis()
    problems = []
    if set(found) != set(saved):
        problems.append(
            f"adapted layers differ: saved but not adapted in the model: {sorted(set(saved) - set(found))}; "
            f"adapted in the model but not saved: {sorted(set(found) - set(saved))}"
        )
    for name in sorted(set(found) & set(saved)):
        adapter = found[name]
        shape = [adapter.out_features, adapter.in_features]
        if shape != saved[name]["shape"]:
            problems.append(f"layer {name!r}: the model's layer is {shape[0]}x{shape[1]}, the saved one {saved[name]['shape']}")
            continue
        if (adapter.basis.name, adapter.basis.options()) != (basis.name, basis.options()):
            problems.append(f"layer {name!r}: the model's basis is {adapter.basis!r}, the saved adapter's {basis!r}")
        if adapter.alpha != float(config.alpha):
            problems.append(f"layer {name!r}: the model's alpha is {adapter.alpha}, the saved adapter's {config.alpha}")
        mine, theirs = adapter.positions.cpu(), tensors[f"{name}.positions"]
        if mine.numel() != theirs.numel():
            problems.append(f"layer {name!r}: the model's adapter has n={mine.numel()} positions, the saved one n={theirs.numel()}")
        elif not torch.equal(mine, theirs):
            differ = (mine != theirs).nonzero().reshape(-1)
            problems.append(
                f"layer {name!r}: positions differ at {differ.numel()} of {mine.numel()} entries "
                f"(first at index {differ[0].item()}: model {mine[differ[0]].item()}, saved {theirs[differ[0]].item()})"
            )
    if problems:
        raise ValueError(
            "the model already has spectral adapters that do not match the saved adapter, so its coefficients "
            "cannot be loaded into them:\n  - " + "\n  - ".join(problems)
            + "\nLoad into a fresh base model instead (load_adapters(base_model, path) injects the saved adapters)"
        )
    _copy_coefficients(model, tensors)


def _copy_coefficients(model: nn.Module, tensors: dict) -> None:
    with torch.no_grad():
        for name, adapter in adapters(model).items():
            adapter.coefficients.copy_(tensors[f"{name}.coefficients"])
            adapter.clear_cache()


def _load_modules_to_save(model: nn.Module, saved_modules: dict, tensors: dict) -> None:
    if not saved_modules:
        return
    modules = _matching_modules(model, tuple(saved_modules))
    for module_name, keys in saved_modules.items():
        module = modules.get(module_name)
        if module is None:
            raise ValueError(f"the saved adapter holds module {module_name!r} (modules_to_save), which this model lacks")
        state = {key: tensors[f"{module_name}.{key}"] for key in keys}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"module {module_name!r} (modules_to_save) does not fit the saved state: {err}") from err


def _check_fingerprint(meta: dict, header: dict, tensors: dict, path: Path) -> None:
    """Refuse a config file that disagrees with the fingerprint saved inside the weights file."""
    if FINGERPRINT_KEY not in header:
        warnings.warn(
            f"{path / WEIGHTS_FILE} carries no fingerprint (saved by spectral_peft format "
            f"{meta.get('format_version', 1)}); its config cannot be checked against the weights",
            stacklevel=3,
        )
        return
    fingerprint = json.loads(header[FINGERPRINT_KEY])
    stored, written = fingerprint["config"], meta["config"]
    for field in sorted(set(stored) | set(written)):
        if stored.get(field) != written.get(field):
            raise ValueError(
                f"{path / CONFIG_FILE} does not match the adapter it sits next to: {field} is "
                f"{written.get(field)!r} in the config file but the weights were saved with {field}="
                f"{stored.get(field)!r}. The config file was edited or belongs to another adapter; refusing to load"
            )
    shapes = {key: list(t.shape) for key, t in tensors.items()}
    for key in sorted(set(shapes) | set(fingerprint["shapes"])):
        if shapes.get(key) != fingerprint["shapes"].get(key):
            raise ValueError(
                f"{path / WEIGHTS_FILE}: tensor {key!r} has shape {shapes.get(key)} but was saved with shape "
                f"{fingerprint['shapes'].get(key)}; the file was altered after saving"
            )
    for name, layer in meta["layers"].items():
        n = shapes.get(f"{name}.coefficients", [None])[0]
        if layer.get("n") != n or shapes.get(f"{name}.positions", [None])[0] != n:
            raise ValueError(
                f"{path / CONFIG_FILE}: layer {name!r} says n={layer.get('n')} but the weights file holds {n} "
                "coefficients for it; refusing to load"
            )


def _check_finite(tensors: dict, path: Path) -> None:
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{path / WEIGHTS_FILE}: {key!r} has {bad} NaN or infinite value(s) of {tensor.numel()}; the model "
                "would output NaN. Refusing to load (the adapter was saved after training diverged?)"
            )
