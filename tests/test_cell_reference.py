"""No behaviour change (issue 11): 3 smoke cells train and score exactly as recorded before the redesign.

``tests/data/cell_reference.json`` was recorded at commit 996a5a1 by
``tests/data/record_cell_reference.py`` (see there for the reduced smoke configuration and the
untrained-probe scorer): every validation's numbers (native loss and cross-formulation x0-MSE, EMA
and raw, by level), the training summary's, and the probe metrics of every setting x weights.
Equality is exact: one torch thread, the same operations in the same order give the same bits. On
another CPU kind or torch version the kernels may round differently; the failure then says so.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("record_cell_reference", DATA / "record_cell_reference.py")
record_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record_reference)
REFERENCE = json.loads((DATA / "cell_reference.json").read_text())


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return record_reference.compute(tmp_path_factory.mktemp("cell-reference"))


def test_reference_covers_three_cells_with_every_number():
    assert sorted(REFERENCE["cells"]) == sorted(record_reference.VARIANTS)
    for cell in REFERENCE["cells"].values():
        assert [v["step"] for v in cell["validations"]] == [4, 8, 10]  # val_every 4 and the last step
        assert all(len(v["numbers"]) == 4 + 4 * 8 for v in cell["validations"])  # 4 means, 4 x 8 levels
        assert len(cell["metrics"]) == 4 and all(set(m) == {"fd_probe", "align_probe"} for m in cell["metrics"].values())
        assert {key.rsplit(", ", 1)[1] for key in cell["metrics"]} == {"ema", "raw"}  # both weights are sampled


@pytest.mark.parametrize("variant", record_reference.VARIANTS)
def test_cell_numbers_are_identical_to_the_recorded_ones(computed, variant):
    want, got = REFERENCE["cells"][variant], computed[variant]
    here = record_reference.environment()
    where = "" if here == REFERENCE["environment"] else (
        f" (recorded on {REFERENCE['environment']}, running on {here}: a different CPU kind or torch version "
        "can round differently; record again at the reference commit on this machine to compare)")
    assert got["validations"] == want["validations"], f"{variant}: validation numbers differ{where}"
    assert got["train"] == want["train"], f"{variant}: training summary differs{where}"
    assert got["metrics"] == want["metrics"], f"{variant}: probe metrics differ{where}"
