"""No behaviour change (issue 11): the formulation layer reproduces values recorded before its redesign.

``tests/data/formulation_reference*.pt`` hold, for a handful of the paper's variants, every output of
the layer on fixed random inputs in float32 and float64, recorded at commit debeb3c by
``tests/data/record_formulation_reference.py``, one file per CPU kind (vectorised math rounds
differently with AVX-512 and AVX2). On a CPU kind with a record, equality is exact (``torch.equal``):
same operations in the same order give the same bits. On another kind the values are compared with the
first record within rounding (:data:`OTHER_CPU`: measured differences reach 170 float32 epsilons where a
difference cancels; any change of the math moves them far more), and the failure says how to record
there. One exception, ``eps_weight`` (a diagnostic, the w_t of the unified
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
OTHER_CPU = {torch.float32: (1e-4, 1e-6), torch.float64: (1e-12, 1e-14)}  # (rtol, atol) without a record here
RECORDS = [torch.load(path, weights_only=False) for path in sorted(DATA.glob("formulation_reference*.pt"))]
HERE = record_reference.environment()
SAME = [r for r in RECORDS if r["environment"] == HERE]
REFERENCE = (SAME or RECORDS)[0]["variants"]
WHERE = "" if SAME else (
    f" (no record for this machine, {HERE}: compared within rounding with the one made on "
    f"{RECORDS[0]['environment']}; if only rounding differs, record at debeb3c here as "
    "tests/data/record_formulation_reference.py says)")


def test_reference_covers_the_variants():
    assert len(RECORDS) >= 2  # an Intel Xeon's (AVX-512) and an AMD EPYC's (AVX2)
    for record in RECORDS:
        assert sorted(record["variants"]) == sorted(record_reference.VARIANTS) and record["commit"] == "debeb3c"
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
            elif SAME:
                assert torch.equal(got[key], value), f"{name} {dtype}: {key} differs"
            else:
                rtol, atol = OTHER_CPU[dtype]
                assert torch.allclose(got[key], value, rtol=rtol, atol=atol), f"{name} {dtype}: {key} differs{WHERE}"
        else:
            assert got[key] == value, f"{name}: {key} differs"
