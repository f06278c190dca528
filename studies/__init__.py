"""Ablation studies for spectral_peft (see studies/README.md)."""
