"""spectral_peft: parameter-efficient fine-tuning in transform domains.

A frozen linear weight W0 gets the update ΔW = α·B⁻¹(S), where B is a registered spectral basis
and S is zero except at n chosen (trainable) positions.
"""

from .bases import SpectralBasis, get_basis, list_bases, register_basis

__version__ = "0.1.0"

__all__ = ["SpectralBasis", "get_basis", "list_bases", "register_basis", "__version__"]
