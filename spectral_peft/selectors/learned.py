"""``learned`` (SHFIN / LoCA): positions chosen by a short warm-up on calibration batches.

For ``steps`` optimizer steps every target layer gets, beside its frozen W0, a dense trainable
spectrum D and a learnable score s per position (both M×N, starting at zero), gated by a relaxed
top-n mask:

    ΔW = α·B⁻¹(m ⊙ D),   m = σ((s + g − t)/T),   g ~ Logistic(0, noise) (seeded),
    t = the n-th largest of s + g (held constant),   T annealed geometrically T0 → T1

so about n positions are "on" at a time. D and s train jointly with Adam on the calibration loss
(the rest of the model frozen, in eval mode); at the end the n positions with the largest s become
the layer's positions, and training proceeds as for any other selector: coefficients from zero
(the warm-up's D is discarded, the model is left exactly as it was).

Why a relaxed (Gumbel/logistic-sigmoid) mask and not a straight-through hard top-n: behind a hard
mask, D outside the current top-n gets no gradient and stays zero, so ∂L/∂s = (∂L/∂m)·D is zero
there too and a position outside the first draw could never enter. The sigmoid lets every
position's coefficient and score learn early; the noise keeps the ranking exploring; annealing T
makes the mask nearly binary by the end, so the winners are the n positions the warmed-up model
was actually using together (a hard top-n, unlike one-shot gradient ranking, accounts for
positions that explain the same part of the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Selector, check_count, top_by_energy
from .registry import register_selector


def _positive(name, value, allow_zero=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


@register_selector("learned")
class LearnedSelector(Selector):
    """Top-n positions by scores learned through a relaxed top-n mask during a warm-up.

    Args:
        steps: warm-up optimizer steps (cycling through the calibration batches).
        lr: Adam learning rate of the dense spectra D.
        score_lr: Adam learning rate of the scores s.
        temperature: (T0, T1), the mask temperature at the first and the last step.
        noise: scale of the logistic (Gumbel-difference) noise added to the scores; 0 for none.
    """

    uses_generator = False  # select is a plain top-n; the warm-up's noise is seeded by config.seed
    needs_data = True
    seeded_scores = True

    def __init__(self, steps: int = 50, lr: float = 1e-3, score_lr: float = 5e-2,
                 temperature=(1.0, 0.05), noise: float = 0.5):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if not isinstance(temperature, (tuple, list)) or len(temperature) != 2:
            raise ValueError(f"temperature must be a pair (T0, T1), got {temperature!r}")
        self.steps = steps
        self.lr = _positive("lr", lr)
        self.score_lr = _positive("score_lr", score_lr)
        self.temperature = (_positive("temperature[0]", temperature[0]), _positive("temperature[1]", temperature[1]))
        self.noise = _positive("noise", noise, allow_zero=True)
        self.last_warmup: dict | None = None  # diagnostics of the last warm-up (steps, final loss)

    def options(self) -> dict:
        return {"steps": self.steps, "lr": self.lr, "score_lr": self.score_lr,
                "temperature": list(self.temperature), "noise": self.noise}

    def temperature_at(self, step: int) -> float:
        t0, t1 = self.temperature
        return t0 * (t1 / t0) ** (step / max(1, self.steps - 1))

    def layer_scores(self, context):
        calibration = context.require_calibration(self.name)
        config, basis = context.config, context.basis
        generator = torch.Generator().manual_seed(config.seed)
        state = {}
        for name in context.targets:
            rows, cols = context.shape(name)
            dtype = context.weight(name).dtype
            device = context.targets[name].weight.device
            check_count(config.n, (rows, cols))
            spectrum = torch.zeros(rows, cols, dtype=dtype, device=device, requires_grad=True)
            scores = torch.zeros(rows, cols, dtype=dtype, device=device, requires_grad=True)
            state[name] = (spectrum, scores)
        optimizer = torch.optim.Adam(
            [{"params": [d for d, _ in state.values()], "lr": self.lr},
             {"params": [s for _, s in state.values()], "lr": self.score_lr}]
        )
        deltas: dict[str, torch.Tensor] = {}

        def hook(name):
            def add_delta(module, inputs, output):
                return output + F.linear(inputs[0], deltas[name].to(inputs[0].dtype))
            return add_delta

        handles = []
        losses = []
        with context.frozen_model():
            try:
                for name, layer in context.targets.items():
                    handles.append(layer.register_forward_hook(hook(name)))
                batches = calibration.batches
                for step in range(self.steps):
                    temperature = self.temperature_at(step)
                    for name, (spectrum, scores) in state.items():
                        uniform = torch.rand(scores.shape, generator=generator, dtype=torch.float64)
                        uniform = uniform.clamp(1e-12, 1 - 1e-12).to(scores)
                        perturbed = scores + self.noise * (uniform.log() - (-uniform).log1p())
                        threshold = torch.kthvalue(perturbed.detach().reshape(-1), scores.numel() - config.n + 1).values
                        mask = torch.sigmoid((perturbed - threshold) / temperature)
                        deltas[name] = config.alpha * basis.inverse(mask * spectrum)
                    loss = calibration.loss(context.model, batches[step % len(batches)])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
            finally:
                for handle in handles:
                    handle.remove()
                deltas.clear()
        self.last_warmup = {"steps": self.steps, "first_loss": losses[0], "last_loss": losses[-1]}
        return {name: scores.detach() for name, (_, scores) in state.items()}

    def select(self, scores, shape, n, generator):
        check_count(n, shape)
        return torch.sort(top_by_energy(scores, n)).values
