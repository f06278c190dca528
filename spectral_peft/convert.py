"""Convert spectral adapters to and from Hugging Face peft: FourierFT, WaveFT, and LoRA by SVD.

Two peft methods are special cases of a spectral adapter, so a trained adapter moves between the
libraries without changing the model's outputs (to float rounding):

* **FourierFT** (``peft.FourierFTConfig``): ΔW = scaling · Re(ifft2(S)), which is our ``dft`` basis with
  ``fourierft_compat=True`` and α = scaling. Both lay S out as out × in, so positions carry over.
* **WaveFT** (``peft.WaveFTConfig``, ``wavelet_family="db1"``, ``use_idwt=True``): one level of the
  orthonormal Haar synthesis, which is our ``wavelet`` basis with ``wavelet="haar"`` (or ``"db1"``) and
  ``level=1``. The four sub-bands are the same blocks in a different order: for an M × N matrix,
  WaveFT's top-right block (row high-pass, column low-pass) is our bottom-left one and vice versa,
  so a position (r, c) in one of those blocks maps to (r ± M/2, c ∓ N/2). WaveFT's longer
  families zero-pad and crop instead of wrapping periodically, which is not an orthonormal basis of
  ours, so only db1 converts.

Neither peft method stores its positions: each layer re-draws ``torch.randperm(M·N,
generator=manual_seed(random_loc_seed))[:n]`` in its own layout. :func:`to_peft` therefore needs
adapters whose positions are exactly that draw, with the seed as ``random_loc_seed``, and says which
layer differs otherwise. For FourierFT that is what ``selector="random", share_positions=True``
chooses; for WaveFT the draw lands in the other block order, so inject with
``positions=peft_positions(model, config)`` (that works for both). :func:`to_lora` works for every
adapter.

:func:`to_lora` exports any adapter as peft LoRA by the truncated SVD of each ΔW (the idea of
peft's ``convert_to_lora``): with ΔW = U Σ Vᵀ, ``lora_B = U_r Σ_r`` and ``lora_A = V_rᵀ`` (scaling 1),
the best rank-r approximation (Eckart–Young), and it reports the captured energy
Σ_{i≤r} σ_i² / Σ_i σ_i² per layer.

All three work in place, like :func:`~spectral_peft.merge_and_unload`: the spectral adapters are
removed from the model that is passed in (``copy.deepcopy`` it first to keep it).
"""

from __future__ import annotations

import dataclasses
import logging
import re

import torch
from torch import nn

from .adapter import SpectralAdapter
from .config import SpectralConfig
from .inject import CONFIG_ATTRIBUTE, _set_submodule, adapters, get_config, inject

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _PeftFormat:
    """How one peft method stores a spectral adapter."""

    method: str  # peft's PeftType value
    spectrum: str  # attribute holding the trainable values (a ParameterDict by adapter name)
    indices: str  # attribute holding the (2, n) row/column positions by adapter name
    swaps_blocks: bool  # whether its layout exchanges the top-right and bottom-left quadrants

    def to_ours(self, flat: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Flat positions in peft's layout → flat positions in ours (the map is its own inverse)."""
        if not self.swaps_blocks:
            return flat
        r, c = flat // cols, flat % cols
        half_r, half_c = rows // 2, cols // 2
        top_right = (r < half_r) & (c >= half_c)
        bottom_left = (r >= half_r) & (c < half_c)
        r = torch.where(top_right, r + half_r, torch.where(bottom_left, r - half_r, r))
        c = torch.where(top_right, c - half_c, torch.where(bottom_left, c + half_c, c))
        return r * cols + c


_FOURIERFT = _PeftFormat("FOURIERFT", "fourierft_spectrum", "indices", swaps_blocks=False)
_WAVEFT = _PeftFormat("WAVEFT", "waveft_spectrum", "waveft_indices", swaps_blocks=True)


def _format_for(config: SpectralConfig) -> _PeftFormat:
    basis = config.build_basis()
    options = basis.options()
    if basis.name == "dft" and options.get("fourierft_compat"):
        return _FOURIERFT
    if basis.name == "wavelet" and options.get("wavelet") in ("haar", "db1"):
        return _WAVEFT
    raise ValueError(
        f"basis {basis!r} has no peft counterpart: to_peft converts basis='dft' with "
        "basis_options={'fourierft_compat': True} (FourierFT) and basis='wavelet' with "
        "basis_options={'wavelet': 'haar', 'level': 1} (WaveFT, db1). Use to_lora(model, rank) for any basis"
    )


def _import_peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError("converting to or from peft needs Hugging Face peft: pip install 'spectral-peft[hf]'") from err
    return peft


def _exact_names(names) -> str:
    """A regex that matches exactly these module names (peft full-matches a string target)."""
    return "(?:" + "|".join(re.escape(name) for name in sorted(names)) + ")"


def _modules_to_save_names(model: nn.Module, config: SpectralConfig) -> list[str] | None:
    from .inject import _matching_modules

    if config.modules_to_save is None:
        return None
    return sorted(_matching_modules(model, config.modules_to_save))


def _check_linear(found: dict[str, SpectralAdapter], what: str) -> None:
    for name, adapter in found.items():
        if adapter.merged:
            raise ValueError(f"layer {name!r} is merged; unmerge it before {what}")
        if type(adapter.base_layer) is not nn.Linear:
            raise TypeError(f"layer {name!r} wraps a {type(adapter.base_layer).__name__}; {what} supports nn.Linear layers")


def _unload(model: nn.Module, found: dict[str, SpectralAdapter]) -> None:
    """Put the plain layers back without merging (the update now lives in the peft adapter)."""
    from .pretrained import uninstall_save_pretrained

    for name, adapter in found.items():
        _set_submodule(model, name, adapter.base_layer)
    if hasattr(model, CONFIG_ATTRIBUTE):
        delattr(model, CONFIG_ATTRIBUTE)
    uninstall_save_pretrained(model)


def _peft_draw(rows: int, cols: int, n: int, seed: int) -> torch.Tensor:
    """The flat positions FourierFT and WaveFT draw for an out × in layer (in their own layout)."""
    return torch.randperm(rows * cols, generator=torch.Generator().manual_seed(seed))[:n]


def peft_positions(model: nn.Module, config: SpectralConfig) -> dict[str, torch.Tensor]:
    """The positions FourierFT / WaveFT would use for each layer ``config`` targets, in our layout.

    ``inject(model, config, positions=peft_positions(model, config))`` makes adapters that
    :func:`to_peft` converts exactly (``config.seed`` plays ``random_loc_seed``).
    """
    from .adapter import linear_weight_shape
    from .inject import find_targets

    fmt = _format_for(config)
    positions = {}
    for name, layer in find_targets(model, config).items():
        rows, cols = linear_weight_shape(layer)
        positions[name] = torch.sort(fmt.to_ours(_peft_draw(rows, cols, config.n, config.seed), rows, cols)).values
    return positions


def to_peft(model: nn.Module, adapter_name: str = "default"):
    """The spectral adapters of ``model`` as an equivalent peft FourierFT or WaveFT model.

    Returns ``peft.get_peft_model(model, config)`` with the spectra set from our coefficients; its
    outputs equal ours. ``modules_to_save`` carry over. The spectral adapters are removed from
    ``model`` (in place).

    Raises:
        ValueError: the basis has no peft counterpart, a wavelet adapter has more than one level, or a
            layer's positions are not the ones the peft method draws from ``random_loc_seed``.
    """
    peft = _import_peft()
    config = get_config(model)
    fmt = _format_for(config)
    found = adapters(model)
    _check_linear(found, "to_peft")
    if any(adapter.n != config.n for adapter in found.values()):
        raise ValueError("to_peft needs the same n in every layer, as the config states")
    coefficients_by_layer = {}
    for name, adapter in found.items():
        rows, cols = adapter.out_features, adapter.in_features
        if fmt is _WAVEFT and adapter.basis.levels_for(rows, cols) != 1:
            raise ValueError(
                f"layer {name!r} uses {adapter.basis.levels_for(rows, cols)} wavelet levels; WaveFT has one "
                "(basis_options={'wavelet': 'haar', 'level': 1})"
            )
        theirs = fmt.to_ours(_peft_draw(rows, cols, adapter.n, config.seed), rows, cols)
        mine = adapter.positions.cpu()
        order = torch.argsort(mine)
        slot = torch.searchsorted(mine[order], theirs).clamp(max=mine.numel() - 1)
        if not torch.equal(mine[order][slot], theirs):
            raise ValueError(
                f"layer {name!r}: its positions are not the {adapter.n} that {fmt.method} draws from "
                f"random_loc_seed={config.seed}. peft stores no positions (it re-draws them from the seed), so only "
                "adapters made with selector='random', share_positions=True convert exactly; use to_lora(model, rank) "
                "for this one"
            )
        coefficients_by_layer[name] = adapter.coefficients.detach().cpu()[order][slot]
    saved = _modules_to_save_names(model, config)
    common = dict(n_frequency=config.n, scaling=float(config.alpha), random_loc_seed=config.seed,
                  target_modules=_exact_names(found), modules_to_save=saved)
    if fmt is _FOURIERFT:
        peft_config = peft.FourierFTConfig(**common)
    else:
        peft_config = peft.WaveFTConfig(wavelet_family="db1", use_idwt=True, **common)
    _unload(model, found)
    peft_model = peft.get_peft_model(model, peft_config, adapter_name=adapter_name)
    base = peft_model.base_model.model
    with torch.no_grad():
        for name, values in coefficients_by_layer.items():
            spectrum = getattr(base.get_submodule(name), fmt.spectrum)[adapter_name]
            spectrum.copy_(values.to(spectrum))
    return peft_model


def from_peft(peft_model, adapter_name: str | None = None) -> nn.Module:
    """A peft FourierFT or WaveFT (db1) model as the base model with equivalent spectral adapters.

    Unloads the peft adapter (``peft_model.unload()``, so the peft model is used up), injects the
    matching spectral adapters with peft's positions mapped to our layout and copies the spectra
    in; ``modules_to_save`` carry over. Returns the base model, whose outputs equal the peft model's.
    """
    adapter_name = adapter_name or peft_model.active_adapter
    peft_config = peft_model.peft_config[adapter_name]
    method = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    if method == _FOURIERFT.method:
        fmt, basis, options = _FOURIERFT, "dft", {"fourierft_compat": True}
    elif method == _WAVEFT.method:
        if peft_config.wavelet_family != "db1" or not peft_config.use_idwt:
            raise ValueError(
                f"WaveFT with wavelet_family={peft_config.wavelet_family!r}, use_idwt={peft_config.use_idwt} has no "
                "spectral counterpart: only db1 with use_idwt=True is an orthonormal (Haar) basis; the longer "
                "families zero-pad and crop"
            )
        fmt, basis, options = _WAVEFT, "wavelet", {"wavelet": "haar", "level": 1}
    else:
        raise ValueError(f"from_peft converts FourierFT and WaveFT adapters, not {method}")
    if peft_config.n_frequency_pattern or getattr(peft_config, "proportional_parameters", False):
        raise ValueError("from_peft needs one n_frequency for every layer (no n_frequency_pattern or proportional_parameters)")
    layers = {}
    for name, module in peft_model.base_model.model.named_modules():
        spectra = getattr(module, fmt.spectrum, None)
        if spectra is None or adapter_name not in spectra:
            continue
        if type(module.get_base_layer()) is not nn.Linear:
            raise TypeError(f"layer {name!r} wraps a {type(module.get_base_layer()).__name__}; from_peft supports nn.Linear")
        rows, cols = module.out_features, module.in_features
        index = getattr(module, fmt.indices)[adapter_name].cpu()
        ours = fmt.to_ours(index[0] * cols + index[1], rows, cols)
        order = torch.argsort(ours)
        layers[name] = (ours[order], spectra[adapter_name].detach().cpu()[order])
    saved = peft_config.modules_to_save
    base = peft_model.unload()
    config = SpectralConfig(
        basis=basis, basis_options=options, selector="random", share_positions=True, n=peft_config.n_frequency,
        alpha=float(peft_config.scaling), seed=int(peft_config.random_loc_seed), target_modules=_exact_names(layers),
        modules_to_save=list(saved) if saved else None,
    )
    inject(base, config, positions={name: positions for name, (positions, _) in layers.items()})
    with torch.no_grad():
        for name, adapter in adapters(base).items():
            adapter.coefficients.copy_(layers[name][1].to(adapter.coefficients))
    return base


@dataclasses.dataclass
class LoraExport:
    """What :func:`to_lora` returns: the peft LoRA model and, per layer, the share of ‖ΔW‖² it keeps."""

    model: nn.Module
    captured_energy: dict[str, float]

    def summary(self) -> str:
        values = list(self.captured_energy.values())
        return (
            f"LoRA export of {len(values)} layers: captured energy min {min(values):.4f}, "
            f"mean {sum(values) / len(values):.4f}, max {max(values):.4f}"
        )


def to_lora(model: nn.Module, rank: int, adapter_name: str = "default") -> LoraExport:
    """Export the spectral adapters of ``model`` as peft LoRA of rank ``rank`` by truncated SVD of ΔW.

    For each layer, ΔW = U Σ Vᵀ (computed in float64) gives ``lora_B = U[:, :r]·Σ[:r]`` and
    ``lora_A = Vᵀ[:r]`` with ``lora_alpha = r`` (scaling 1), so the LoRA update is the best rank-r
    approximation of ΔW in the Frobenius norm. ``captured_energy[layer]`` is Σ_{i≤r} σ_i² / Σ_i σ_i²
    (1.0 for ΔW = 0); at r = min(M, N) the export is exact. ``modules_to_save`` carry over. The
    spectral adapters are removed from ``model`` (in place).
    """
    peft = _import_peft()
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
    config = get_config(model)
    found = adapters(model)
    _check_linear(found, "to_lora")
    factors, energy = {}, {}
    for name, adapter in found.items():
        if rank > min(adapter.out_features, adapter.in_features):
            raise ValueError(
                f"rank {rank} exceeds layer {name!r} ({adapter.out_features}x{adapter.in_features}), whose ΔW has rank "
                f"at most {min(adapter.out_features, adapter.in_features)}"
            )
        with torch.no_grad():
            delta = adapter.delta_weight().to(torch.float64).cpu()
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        total = float((s**2).sum())
        energy[name] = float((s[:rank] ** 2).sum()) / total if total > 0 else 1.0
        factors[name] = (vh[:rank], u[:, :rank] * s[:rank])
    saved = _modules_to_save_names(model, config)
    _unload(model, found)
    lora_config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none",
                                  target_modules=_exact_names(found), modules_to_save=saved)
    peft_model = peft.get_peft_model(model, lora_config, adapter_name=adapter_name)
    base = peft_model.base_model.model
    with torch.no_grad():
        for name, (lora_a, lora_b) in factors.items():
            layer = base.get_submodule(name)
            layer.lora_A[adapter_name].weight.copy_(lora_a.to(layer.lora_A[adapter_name].weight))
            layer.lora_B[adapter_name].weight.copy_(lora_b.to(layer.lora_B[adapter_name].weight))
    export = LoraExport(peft_model, energy)
    logger.info("spectral_peft.to_lora: %s", export.summary())
    return export
