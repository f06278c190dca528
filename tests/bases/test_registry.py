"""The basis registry: list_bases / get_basis / register_basis / unregister_basis."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest
import scipy.fft
import torch

import spectral_peft
from spectral_peft import SpectralBasis, get_basis, list_bases
from spectral_peft.bases import register_basis

CORE = ["dct", "dft", "dht", "dht_separable", "identity", "wavelet"]


def _unregister(name: str) -> None:
    from spectral_peft.bases import registry

    fn = getattr(registry, "unregister_basis", None)
    if fn is not None:
        fn(name)
    else:  # pragma: no cover - fallback for an older registry
        registry._BASES.pop(name)


@pytest.fixture
def temp_name():
    """A basis name that is free now and is removed from the registry after the test."""
    name = "_test_tmp_basis"
    assert name not in list_bases()
    yield name
    if name in list_bases():
        _unregister(name)
    assert name not in list_bases()


# --------------------------------------------------------------------------- listing
def test_public_api_exports():
    assert spectral_peft.get_basis is get_basis
    assert spectral_peft.list_bases is list_bases
    assert isinstance(SpectralBasis, type)


def test_list_bases_sorted_strings_with_core():
    names = list_bases()
    assert isinstance(names, list)
    assert all(isinstance(n, str) for n in names)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in CORE:
        assert name in names


def test_list_bases_returns_a_copy():
    names = list_bases()
    names.append("bogus")
    assert "bogus" not in list_bases()


@pytest.mark.parametrize("pattern", ["dht*", "d?t", "*", "*sep*", "wave*", "nothing_matches_*", "[di]*"])
def test_list_bases_pattern_is_fnmatch(pattern):
    everything = list_bases()
    expected = sorted(n for n in everything if fnmatch.fnmatchcase(n, pattern))
    assert list_bases(pattern) == expected
    assert list_bases(pattern=pattern) == expected


def test_list_bases_pattern_examples():
    assert {"dht", "dht_separable"} <= set(list_bases("dht*"))
    assert not {"dct", "dft", "wavelet", "identity"} & set(list_bases("dht*"))
    assert {"dct", "dft", "dht"} <= set(list_bases("d?t"))
    assert "dht_separable" not in list_bases("d?t")
    assert list_bases("no_such_basis_*") == []
    assert list_bases(None) == list_bases()


# --------------------------------------------------------------------------- lookup
@pytest.mark.parametrize("name", CORE)
def test_get_basis_returns_instance_named_as_registered(name):
    b = get_basis(name)
    assert isinstance(b, SpectralBasis)
    assert b.name == name


def test_get_basis_returns_independent_instances():
    a = get_basis("wavelet", wavelet="haar", level=1)
    b = get_basis("wavelet", wavelet="db2", level=2)
    W = torch.randn(8, 8, dtype=torch.float64)
    # options of one instance must not leak into another (no shared mutable config)
    assert not torch.allclose(a.forward(W), b.forward(W))
    c = get_basis("wavelet", wavelet="haar", level=1)
    torch.testing.assert_close(a.forward(W), c.forward(W))


def test_unknown_name_raises_keyerror_listing_valid_names():
    with pytest.raises(KeyError) as ei:
        get_basis("no_such_basis")
    assert isinstance(ei.value, LookupError)
    msg = str(ei.value)
    assert "no_such_basis" in msg
    for name in list_bases():
        assert name in msg, f"error message does not list valid name {name!r}: {msg}"


@pytest.mark.parametrize("name", CORE)
def test_unknown_option_raises(name):
    with pytest.raises((TypeError, ValueError)):
        get_basis(name, definitely_not_an_option=1)


# --------------------------------------------------------------------------- registration
def test_duplicate_registration_is_an_error():
    before = type(get_basis("dht"))

    # Subclasses implement _forward/_inverse; SpectralBasis.forward/inverse wrap them with the
    # dtype promotion and shape checks.
    class Dup(SpectralBasis):  # never used: registration must fail
        def _forward(self, W):
            return W

        def _inverse(self, C):
            return C

    with pytest.raises(ValueError) as ei:
        register_basis("dht")(Dup)
    assert "dht" in str(ei.value)
    # the original registration is untouched
    assert type(get_basis("dht")) is before
    W = np.random.default_rng(0).standard_normal((3, 4))
    F = np.fft.fft2(W)
    np.testing.assert_allclose(
        get_basis("dht").forward(torch.from_numpy(W)).numpy(), (F.real - F.imag) / np.sqrt(12), atol=1e-12
    )


def _dst_basis_class():
    class DSTBasis(SpectralBasis):
        """Orthonormal 2-D DST-II via scipy (numpy round trip; float64 only, no autograd)."""

        orthonormal = True
        invertible = True

        def _forward(self, W):
            out = scipy.fft.dstn(W.detach().cpu().numpy(), type=2, norm="ortho", axes=(-2, -1))
            return torch.from_numpy(out).to(W)

        def _inverse(self, C):
            out = scipy.fft.idstn(C.detach().cpu().numpy(), type=2, norm="ortho", axes=(-2, -1))
            return torch.from_numpy(out).to(C)

    return DSTBasis


def test_register_custom_basis_then_unregister(temp_name):
    cls = _dst_basis_class()
    returned = register_basis(temp_name)(cls)
    assert returned is not None and issubclass(returned, SpectralBasis)

    assert temp_name in list_bases()
    assert list_bases() == sorted(list_bases())
    assert temp_name in list_bases("_test_*")

    b = get_basis(temp_name)
    assert isinstance(b, cls)
    assert b.name == temp_name
    W = np.random.default_rng(1).standard_normal((5, 7))
    C = b.forward(torch.from_numpy(W)).numpy()
    np.testing.assert_allclose(C, scipy.fft.dstn(W, type=2, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(b.inverse(torch.from_numpy(C)).numpy(), W, atol=1e-12)
    b.check_shape(5, 7)  # inherited default: any shape is fine

    # a second registration under the same name is rejected
    with pytest.raises(ValueError):
        register_basis(temp_name)(_dst_basis_class())

    _unregister(temp_name)
    assert temp_name not in list_bases()
    with pytest.raises(KeyError):
        get_basis(temp_name)

    # and the name is free again
    register_basis(temp_name)(_dst_basis_class())
    assert temp_name in list_bases()


def test_decorator_syntax(temp_name):
    @register_basis(temp_name)
    class Negate(SpectralBasis):
        orthonormal = True
        invertible = True

        def _forward(self, W):
            return -W

        def _inverse(self, C):
            return -C

    assert Negate is not None
    b = get_basis(temp_name)
    assert isinstance(b, Negate)
    W = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(b.forward(W), -W)
    torch.testing.assert_close(b.inverse(b.forward(W)), W)


@pytest.mark.parametrize("name", list_bases())
@pytest.mark.parametrize("shape", [(384, 384), (6, 10), (8, 8), (0, 4), (7, 7), (64, 256)])
def test_shape_error_is_check_shape_s_message_or_none(name, shape):
    basis = get_basis(name)
    try:
        basis.check_shape(*shape)
    except ValueError as err:
        assert basis.shape_error(*shape) == str(err)
    else:
        assert basis.shape_error(*shape) is None
    if shape == (0, 4):
        assert "must be >= 1" in basis.shape_error(*shape)
