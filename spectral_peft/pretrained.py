"""``save_pretrained`` of an adapted Hugging Face model writes a checkpoint that round-trips.

A plain ``model.save_pretrained(dir)`` after :func:`~spectral_peft.inject` would write the wrapped
keys (``...query.base_layer.weight``, ``...query.coefficients``) and nothing under
``...query.weight``, so ``from_pretrained(dir)`` of the base class would silently re-initialise every
adapted layer. :func:`~spectral_peft.inject` therefore gives the model its own ``save_pretrained``
that writes, for every adapted layer, both

* ``<layer>.weight`` = W0 + ΔW and ``<layer>.bias`` (the merged layer, under the base model's own
  names): ``AutoModel...from_pretrained(dir)`` loads a plain model with the adapted outputs, with
  nothing of this package needed (it reports the adapter's tensors below as unexpected keys and
  ignores them); and
* the adapter's own tensors (``<layer>.base_layer.weight`` = W0, ``<layer>.coefficients``,
  ``<layer>.positions``): ``load_state_dict`` into a model injected with the same config restores
  the adapter exactly (this is how ``Trainer`` resumes from a checkpoint); the merged copy is then
  dropped by a load hook on each adapter, so strict loading works too.

To share only the adapter use :func:`~spectral_peft.save_adapters`; for a plain merged model call
:func:`~spectral_peft.merge_and_unload` before ``save_pretrained``. Sharded (FSDP2) models must use
one of those two.
"""

from __future__ import annotations

import types

import torch
from torch import nn

from .distributed import is_sharded

_ATTRIBUTE = "save_pretrained"


def install_save_pretrained(model: nn.Module) -> None:
    """Give a transformers ``PreTrainedModel`` the round-tripping ``save_pretrained`` (others: no-op)."""
    if any(cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers") for cls in type(model).__mro__):
        model.__dict__[_ATTRIBUTE] = types.MethodType(save_pretrained, model)


def uninstall_save_pretrained(model: nn.Module) -> None:
    """Restore the class's own ``save_pretrained`` (after :func:`~spectral_peft.merge_and_unload`)."""
    model.__dict__.pop(_ATTRIBUTE, None)


@torch.no_grad()
def save_pretrained(model: nn.Module, save_directory, *args, state_dict: dict | None = None, **kwargs):
    """``type(model).save_pretrained`` with merged weights added under the base model's names."""
    from .inject import adapters

    found = adapters(model)
    if state_dict is None:
        state_dict = model.state_dict()
    state_dict = dict(state_dict)
    for name, adapter in found.items():
        wrapped = f"{name}.base_layer.weight"
        if wrapped not in state_dict:
            continue
        weight = state_dict[wrapped]
        if is_sharded(weight) or is_sharded(adapter.coefficients):
            raise ValueError(
                "save_pretrained of an FSDP-sharded adapted model is not supported: use save_adapters(model, path) "
                "(on every rank), or merge_and_unload(model) and save the merged model"
            )
        if adapter.merged:  # the base weight already holds W0 + ΔW
            state_dict[f"{name}.weight"] = weight.clone()
        else:
            delta = adapter.delta_weight()
            delta = delta.T if adapter.fan_in_fan_out else delta
            compute = torch.promote_types(weight.dtype, torch.float32)
            state_dict[f"{name}.weight"] = (weight.to(compute) + delta.to(weight.device, compute)).to(weight.dtype)
        bias = state_dict.get(f"{name}.base_layer.bias")
        if bias is not None:
            state_dict[f"{name}.bias"] = bias.clone()  # safetensors refuses two names for one tensor
    return type(model).save_pretrained(model, save_directory, *args, state_dict=state_dict, **kwargs)
