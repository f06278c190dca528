"""SpectralConfig validation: every bad input gets an error naming the problem and what is allowed."""

from __future__ import annotations

import pytest

from spectral_peft import SpectralConfig, list_selectors


def test_defaults_build_a_basis_and_a_selector():
    config = SpectralConfig()
    assert config.build_basis().name == "dht"
    assert config.build_selector().name == "mixed"


def test_lists_become_tuples_and_round_trip_through_dict():
    config = SpectralConfig(basis="wavelet", basis_options={"wavelet": "haar", "level": 2}, delta=0.3,
                            target_modules=["q", "v"], exclude_modules=["layer.0.q"], modules_to_save=["classifier"])
    assert config.target_modules == ("q", "v")
    assert config.modules_to_save == ("classifier",)
    assert SpectralConfig.from_dict(config.to_dict()) == config


def test_config_is_immutable_and_replace_copies():
    config = SpectralConfig(n=10)
    with pytest.raises(Exception):
        config.n = 11
    assert config.replace(n=11).n == 11 and config.n == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"basis": "hadamard"}, r"unknown basis 'hadamard'; registered bases: dct, dft, dht"),
        ({"selector": "magnitude"}, r"unknown selector 'magnitude'; registered selectors: " + ", ".join(list_selectors())),
        ({"n": 0}, r"n must be an integer >= 1"),
        ({"n": 2.5}, r"n must be an integer >= 1"),
        ({"delta": 1.2}, r"delta must be a number in \[0, 1\]"),
        ({"delta": -0.1}, r"delta must be a number in \[0, 1\]"),
        ({"selector": "random", "delta": 0.5}, r"selector 'random' takes no delta"),
        ({"basis": "patchwise:dct:4:2:x:y"}, r"basis spec 'patchwise:dct:4:2:x:y' has 5 arguments but 'patchwise' takes at most 4"),
        ({"selector": "mixed:0.3", "delta": 0.5}, r"selector options \['delta'\] are given both in the spec and as options"),
        ({"alpha": float("nan")}, r"alpha must be a finite number"),
        ({"target_modules": []}, r"target_modules must be a non-empty list"),
        ({"target_modules": "query("}, r"not a valid regular expression"),
        ({"basis": "wavelet", "basis_options": {"wavelet": "bior2.2"}}, r"not orthogonal"),
        ({"basis": "dct", "basis_options": {"level": 2}}, r"invalid options"),
        ({"modules_to_save": []}, r"modules_to_save must be a non-empty list .* \(or None\)"),
        ({"modules_to_save": "head["}, r"modules_to_save='head\[' is not a valid regular expression"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises((ValueError, KeyError, TypeError), match=message):
        SpectralConfig(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown SpectralConfig fields \['rank'\]"):
        SpectralConfig.from_dict({"rank": 8})


def test_specs_give_constructor_arguments_in_order_and_round_trip():
    config = SpectralConfig(basis="patchwise:dct:8:2", selector="band:high")
    basis = config.build_basis()
    assert (basis.inner_name, basis.block, basis.levels) == ("dct", (8, 8), 2)
    assert config.build_selector().band == "high"
    assert SpectralConfig(selector="mixed:0.25").build_selector().delta == 0.25
    assert SpectralConfig(basis="dft:true").build_basis().fourierft_compat is True
    assert SpectralConfig.from_dict(config.to_dict()) == config
