"""Put spectral adapters into a model, merge them out, and count what trains.

    model = AutoModel.from_pretrained(...)
    inject(model, SpectralConfig(basis="dht", selector="mixed", delta=0.7, n=1000,
                                 target_modules=["query", "value"]))
    ...train...
    plain = merge_and_unload(model)
"""

from __future__ import annotations

import logging
import sys

import torch
from torch import nn

from .adapter import SpectralAdapter, is_conv1d
from .config import SpectralConfig, module_matches
from .distributed import is_sharded
from .selection import choose_positions

CONFIG_ATTRIBUTE = "spectral_peft_config"
logger = logging.getLogger(__name__)


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


def trainable_summary(model: nn.Module) -> str:
    """One line saying what trains: ``trainable params: T (spectral coefficients C, modules_to_save H,
    other O) || all params: A || trainable%: 100·T/A``."""
    coefficients = {id(a.coefficients) for a in adapters(model).values()}
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    saved = set()
    if config is not None and config.modules_to_save is not None:
        for module in _matching_modules(model, config.modules_to_save).values():
            saved.update(id(p) for p in module.parameters())
    counts = {"coefficients": 0, "saved": 0, "other": 0}
    total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            kind = "coefficients" if id(param) in coefficients else "saved" if id(param) in saved else "other"
            counts[kind] += param.numel()
    trainable = sum(counts.values())
    return (
        f"trainable params: {trainable:,} (spectral coefficients {counts['coefficients']:,}, "
        f"modules_to_save {counts['saved']:,}, other {counts['other']:,}) || all params: {total:,} || "
        f"trainable%: {100 * trainable / max(total, 1):.4f}"
    )


def print_trainable_parameters(model: nn.Module) -> None:
    """Print :func:`trainable_summary` (peft's ``print_trainable_parameters``)."""
    print(trainable_summary(model))


def mark_trainable(model: nn.Module) -> nn.Module:
    """Make the spectral coefficients and the config's ``modules_to_save`` trainable again; returns ``model``.

    Needed after another library freezes them: ``peft.get_peft_model`` (LoRA on top of spectral
    adapters) sets ``requires_grad=False`` on every parameter that is not its own.
    """
    for adapter in adapters(model).values():
        adapter.coefficients.requires_grad_(True)
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    if config is not None and config.modules_to_save is not None:
        for module in _matching_modules(model, config.modules_to_save).values():
            module.requires_grad_(True)
    return model


def find_targets(model: nn.Module, config: SpectralConfig) -> dict[str, nn.Module]:
    """The modules ``config.target_modules`` selects (minus ``exclude_modules``), checked to be linear."""
    targets = {}
    for name, module in model.named_modules():
        if not name or not module_matches(name, config.target_modules):
            continue
        if config.exclude_modules is not None and module_matches(name, config.exclude_modules):
            continue
        if _is_peft_layer(module):
            inner = name + ".base_layer"
            suffix = name.rsplit(".", 1)[-1] + ".base_layer"
            raise TypeError(
                f"target_modules={config.target_modules!r} matches {name!r}, a peft adapter wrapper "
                f"({type(module).__module__}.{type(module).__qualname__}), not a linear layer. Spectral "
                f"adapters go on the nn.Linear inside it, {inner!r}: target that instead, e.g. "
                f"target_modules=[{suffix!r}] (name suffixes) or a regex that matches {inner!r}"
            )
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

    Afterwards only the adapters' ``coefficients`` and the parameters of ``config.modules_to_save``
    train: every other parameter is frozen, except the adapter parameters of other libraries
    (peft's ``lora_A``/``lora_B``…, its ``modules_to_save`` copies), whose ``requires_grad`` is left
    as it was. A one-line :func:`trainable_summary` is logged (``logging.INFO``). Returns ``model``.

    On a Hugging Face model, ``model.save_pretrained`` then writes a checkpoint that
    ``from_pretrained`` of the base class loads as the adapted model (see
    :mod:`spectral_peft.pretrained`).

    Args:
        model: any ``nn.Module`` (a Hugging Face model, a plain stack of layers, ...).
        config: what to inject where.
        positions: optional precomputed positions per layer name (used by :func:`load_adapters`,
            or from :func:`~spectral_peft.selection.preview_positions`); by default they are chosen
            by the configured selector.
        calibration: batches (or a :class:`~spectral_peft.selection.Calibration`) for selectors that
            choose positions from data (``gradient``, ``learned``); ignored by the others.

    Raises:
        ValueError: the model is already adapted; targeted layers share a weight tensor (tied
            weights); ``modules_to_save`` matches nothing or overlaps a target.
        TypeError: a target is not a linear layer (or is a peft wrapper: the message names the
            layer inside it).
    """
    if not isinstance(config, SpectralConfig):
        raise TypeError(f"config must be a SpectralConfig, got {type(config).__name__}")
    existing = adapters(model)
    if existing:
        raise ValueError(
            f"this model is already adapted: it has {len(existing)} spectral adapter(s) (e.g. "
            f"{next(iter(existing))!r}), and injecting again would stack a second update on them. To load "
            "saved coefficients into it use load_adapters(model, path); to start over call "
            "merge_and_unload(model) first or load a fresh model"
        )
    targets = find_targets(model, config)
    check_shared_weights(model, targets)
    to_save = find_modules_to_save(model, config, targets)
    if positions is None:
        positions = choose_positions(model, targets, config, calibration)
    elif set(positions) != set(targets):
        raise ValueError(
            f"positions are given for layers {sorted(positions)} but the config targets {sorted(targets)}"
        )
    basis = config.build_basis()
    keep = _foreign_adapter_parameters(model)
    for param in model.parameters():
        if id(param) not in keep:
            param.requires_grad_(False)
    for name, layer in targets.items():
        adapter = SpectralAdapter(layer, basis, positions[name], config.alpha)
        adapter.register_load_state_dict_pre_hook(_drop_merged_copy)
        _set_submodule(model, name, adapter)
    for module in to_save.values():
        module.requires_grad_(True)
    setattr(model, CONFIG_ATTRIBUTE, config)
    from .pretrained import install_save_pretrained

    install_save_pretrained(model)
    logger.info("spectral_peft.inject: %s", trainable_summary(model))
    return model


def merge_and_unload(model: nn.Module, safe_merge: bool = False) -> nn.Module:
    """Merge every adapter into its base weight and put the plain layer back; returns ``model``.

    The result is an ordinary model (no adapter code runs) whose outputs equal the adapted model's.
    With ``safe_merge`` (peft's name) every merged weight is checked before it is written and a
    ``ValueError`` naming the layer is raised if ΔW or W0 + ΔW has a NaN or infinite entry; the
    layers merged before it are unmerged again, so the model is left as it was. On an FSDP2
    (``fully_shard``) model every rank must call it: coefficients are gathered and each rank
    updates its own shard of W0.
    """
    from .distributed import is_fsdp_unit, reshard

    found = adapters(model)
    if not found:
        raise ValueError("this model has no spectral adapters to merge")
    units = [name for name, adapter in found.items() if is_fsdp_unit(adapter)]
    if units:
        raise ValueError(
            f"adapter {units[0]!r} is itself a fully_shard unit, so it cannot be removed from the sharded model (its "
            "base weight would lose the hooks that gather it). Apply fully_shard to the blocks that contain the "
            "adapters (e.g. each transformer layer), or merge without unloading: "
            "for a in adapters(model).values(): a.merge()"
        )
    reshard(model)
    merged_here = []
    for name, adapter in found.items():
        if adapter.merged:
            continue
        try:
            adapter.merge(safe_merge=safe_merge)
        except ValueError as err:
            for done in reversed(merged_here):
                done.unmerge()
            raise ValueError(f"layer {name!r}: {err}; no layer was merged") from err
        merged_here.append(adapter)
    for name, adapter in found.items():
        _set_submodule(model, name, adapter.base_layer)
    if hasattr(model, CONFIG_ATTRIBUTE):
        delattr(model, CONFIG_ATTRIBUTE)
    from .pretrained import uninstall_save_pretrained

    uninstall_save_pretrained(model)
    return model


def find_modules_to_save(
    model: nn.Module, config: SpectralConfig, targets: dict[str, nn.Module]
) -> dict[str, nn.Module]:
    """The modules ``config.modules_to_save`` selects; an error if it selects none or overlaps a target."""
    if config.modules_to_save is None:
        return {}
    found = _matching_modules(model, config.modules_to_save)
    if not found:
        children = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name})
        raise ValueError(
            f"modules_to_save={config.modules_to_save!r} matches no module; module names in this model end in: "
            f"{', '.join(children[:30])}{', ...' if len(children) > 30 else ''}"
        )
    for saved in found:
        overlap = [t for t in targets if t == saved or t.startswith(saved + ".") or saved.startswith(t + ".")]
        if overlap:
            raise ValueError(
                f"modules_to_save matches {saved!r}, which is or contains the targeted layer {overlap[0]!r}; a "
                "module is either adapted (target_modules) or trained whole (modules_to_save), not both"
            )
    return found


def check_shared_weights(model: nn.Module, targets: dict[str, nn.Module]) -> None:
    """Refuse targets whose weight tensor is shared (tied) with another module or another target.

    Two adapters on one tensor would both add their update to it when merged (and one tied to an
    embedding would change the embedding), so the merged model would differ from the adapted one.
    """
    owners: dict[tuple, list[str]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param_name, param in module.named_parameters(recurse=False, remove_duplicate=False):
            key = _tensor_key(param)
            if key is not None:
                owners.setdefault(key, []).append(f"{module_name}.{param_name}" if module_name else param_name)
    for name, layer in targets.items():
        key = _tensor_key(layer.weight)
        others = [owner for owner in owners.get(key, []) if owner != f"{name}.weight"]
        if others:
            tied_targets = [t for t in targets if t != name and f"{t}.weight" in others]
            consequence = (
                f"both {name!r} and {tied_targets[0]!r} are targeted, so merging would add both updates to the "
                "one tensor" if tied_targets else f"merging its update would also change {others[0]!r}"
            )
            raise ValueError(
                f"layer {name!r} shares its weight tensor with {', '.join(map(repr, others))} (tied weights): "
                f"{consequence} and the merged model would differ from the adapted one. Leave it out "
                f"(exclude_modules=[{name!r}]) or untie the weights first (e.g. tie_word_embeddings=False)"
            )


def _tensor_key(param: torch.Tensor) -> tuple | None:
    """Identifies the memory a tensor occupies (None where that is not knowable: meta, sharded)."""
    if param.device.type == "meta" or is_sharded(param):
        return None
    return (param.untyped_storage().data_ptr(), param.storage_offset(), tuple(param.shape), param.stride())


def _matching_modules(model: nn.Module, patterns) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and module_matches(name, patterns)}


def _is_peft_layer(module: nn.Module) -> bool:
    """Whether ``module`` is one of peft's adapter wrappers (only possible once peft is imported)."""
    tuners = sys.modules.get("peft.tuners.tuners_utils")
    return tuners is not None and isinstance(module, tuners.BaseTunerLayer)


def _foreign_adapter_parameters(model: nn.Module) -> set[int]:
    """ids of parameters that belong to other libraries' adapters (peft), whose trainability inject keeps."""
    tuners = sys.modules.get("peft.tuners.tuners_utils")
    if tuners is None:
        return set()
    other = sys.modules.get("peft.utils.other")
    keep: set[int] = set()
    for module in model.modules():
        if isinstance(module, tuners.BaseTunerLayer):
            for attribute in (*module.adapter_layer_names, *module.other_param_names):
                value = getattr(module, attribute, None)
                if isinstance(value, nn.Module):
                    keep.update(id(p) for p in value.parameters())
        elif other is not None and isinstance(module, getattr(other, "ModulesToSaveWrapper", ())):
            keep.update(id(p) for p in module.modules_to_save.parameters())
    return keep


def _drop_merged_copy(module, state_dict, prefix, *args) -> None:
    """Ignore the merged ``<layer>.weight``/``.bias`` that ``save_pretrained`` writes next to the adapter's
    own tensors (see :mod:`spectral_peft.pretrained`), so the checkpoint loads strictly into an adapted model."""
    if prefix + "base_layer.weight" in state_dict:
        state_dict.pop(prefix + "weight", None)
        state_dict.pop(prefix + "bias", None)


def set_route(model: nn.Module, route: str) -> nn.Module:
    """Force how every spectral adapter of ``model`` computes its forward/backward pass.

    ``route`` is one of ``spectral_peft.fastpath.ROUTES``: ``"auto"`` (the default: chosen per layer
    by shape and token count), ``"reference"``, ``"dense"``, ``"merged"``, ``"sparse"`` or ``"compact"``. All routes
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
