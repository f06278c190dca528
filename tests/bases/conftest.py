"""Fixtures for the basis tests only."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_intra_op_thread():
    """The tensors here are tiny: intra-op threading only adds overhead, and on a loaded 2-core
    box it makes small conv1d / fft calls 10-50x slower. Scoped to these tests (restored after),
    so model-sized tests elsewhere keep all threads. Override with TEST_TORCH_THREADS."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("TEST_TORCH_THREADS", "1")))
    yield
    torch.set_num_threads(before)
