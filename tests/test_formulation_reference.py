"""No behaviour change (issue 11): the formulation layer reproduces values recorded before its redesign.

``tests/data/formulation_reference.pt`` holds, for a handful of the paper's variants, every output of
the layer on fixed random inputs in float32 and float64, recorded at commit debeb3c by
``tests/data/record_formulation_reference.py``. Equality is exact (``torch.equal``): same operations in
the same order give the same bits. One exception, ``eps_weight`` (a diagnostic, the w_t of the unified
loss, used by no training code): EDM's is now the composed ``weight(t) * (b/a)^2`` of its loss instead
of the fused ``(sigma^2 + sd^2)/sd^2``, equal to rounding.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("record_reference", DATA / "record_formulation_reference.py")
record_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record_reference)
ROUNDING_ONLY = {"eps_weight": {torch.float32: 1e-6, torch.float64: 1e-13}}  # key -> rtol
REFERENCE = torch.load(DATA / "formulation_reference.pt", weights_only=False)["variants"]


def test_reference_covers_the_variants():
    assert sorted(REFERENCE) == sorted(record_reference.VARIANTS)
    assert len(REFERENCE) >= 5


@pytest.mark.parametrize("name", record_reference.VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_identical_to_the_recorded_values(name, dtype):
    want = REFERENCE[name][str(dtype)]
    got = record_reference.record(name, dtype)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype, key
            if key in ROUNDING_ONLY:
                assert torch.allclose(got[key], value, rtol=ROUNDING_ONLY[key][dtype], atol=0), key
            else:
                assert torch.equal(got[key], value), f"{name} {dtype}: {key} differs"
        else:
            assert got[key] == value, f"{name}: {key} differs"
