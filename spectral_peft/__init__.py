"""spectral_peft: parameter-efficient fine-tuning in transform domains.

A frozen linear weight W0 gets the update ΔW = α·B⁻¹(S), where B is a registered spectral basis
and S is zero except at n chosen (trainable) positions::

    from spectral_peft import SpectralConfig, inject
    inject(model, SpectralConfig(basis="dht", selector="mixed", delta=0.7, n=1000,
                                 target_modules=["query", "value"]))
"""

from .adapter import SpectralAdapter
from .bases import SpectralBasis, get_basis, list_bases, register_basis, unregister_basis
from .config import SpectralConfig
from .convert import LoraExport, from_peft, peft_positions, to_lora, to_peft
from .inject import (
    adapters, get_config, inject, mark_trainable, merge_and_unload, print_trainable_parameters, set_route,
    trainable_parameters, trainable_summary,
)
from .selection import Calibration, preview_positions
from .selectors import Selector, get_selector, list_selectors, register_selector
from .serialization import load_adapters, save_adapters

__version__ = "0.1.0"

__all__ = [
    "Calibration",
    "LoraExport",
    "SpectralAdapter",
    "SpectralBasis",
    "SpectralConfig",
    "Selector",
    "adapters",
    "from_peft",
    "get_basis",
    "get_config",
    "get_selector",
    "inject",
    "list_bases",
    "list_selectors",
    "load_adapters",
    "mark_trainable",
    "merge_and_unload",
    "peft_positions",
    "preview_positions",
    "print_trainable_parameters",
    "register_basis",
    "register_selector",
    "save_adapters",
    "set_route",
    "to_lora",
    "to_peft",
    "trainable_parameters",
    "trainable_summary",
    "unregister_basis",
    "__version__",
]
