"""Fast, exact training routes for spectral adapters.

The dense update ΔW = α·B⁻¹(S) need not be rebuilt and multiplied on every step: when the basis
factors along rows and columns (:mod:`.factorization`), x ΔWᵀ and every gradient can be computed
from 1-D transforms of the activations and the n coefficients alone (:mod:`.functions`), and the
adapter picks, per layer and per input shape, the cheapest exact route (:mod:`.plan`).

A basis that provides no factorization is served by the dense route automatically.
"""

from .factorization import Entries, Factorization, factorization_for, register_factorization, separable
from .operators import (
    CosinePairOp,
    DwtLevel,
    HartleyPairOp,
    IdentityOp,
    LinearOp,
    RfftOp,
    SpectrumOp,
    WaveletCascadeOp,
    cosine_slot,
    hartley_slot,
    rfft_cos_slot,
    rfft_sin_slot,
)
from .plan import ROUTES, AdapterPlan, choose_route, route_costs

__all__ = [
    "ROUTES",
    "AdapterPlan",
    "CosinePairOp",
    "DwtLevel",
    "Entries",
    "Factorization",
    "HartleyPairOp",
    "IdentityOp",
    "LinearOp",
    "RfftOp",
    "SpectrumOp",
    "WaveletCascadeOp",
    "choose_route",
    "cosine_slot",
    "factorization_for",
    "hartley_slot",
    "register_factorization",
    "rfft_cos_slot",
    "rfft_sin_slot",
    "route_costs",
    "separable",
]
