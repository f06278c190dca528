"""Fast, exact training routes for spectral adapters.

The dense update ΔW = α·B⁻¹(S) need not be rebuilt and multiplied on every step: when the basis
declares a factorization (:meth:`spectral_peft.bases.SpectralBasis.factorization`, built from the
1-D operators of :mod:`spectral_peft.operators`), x ΔWᵀ and every gradient can be computed from
1-D transforms of the activations and the n coefficients alone (:mod:`.functions`, :mod:`.core`;
restricted to the touched basis functions where those are compactly supported, :mod:`.compact`),
and the adapter picks, per layer and per input shape, the cheapest exact route (:mod:`.plan`).

This package knows operators and routes only: it never names a basis. A basis whose
``factorization`` returns None is served by the dense route automatically.
"""

from .plan import ROUTES, AdapterPlan, choose_route, route_costs

__all__ = ["ROUTES", "AdapterPlan", "choose_route", "route_costs"]
