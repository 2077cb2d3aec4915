"""The paper's numbers we compare against (Esser et al. 2024, arXiv 2403.03206; spec section 4).

Table 1: average non-dominated rank (lower is better) per variant, over all 24 control settings,
over the 5-step settings and over the 50-step settings, in our canonical variant spelling. The
paper's 50-step values are all multiples of 0.25, which fits 4 settings (one cfg x EMA/raw x two
datasets), not the 12 of three cfgs: :data:`PAPER_50_STEP_CFG` is our reading (cfg 5.0, the cfg of
the 5-step column). Only these numbers live here; nothing else in the package hard-codes them.
"""

from __future__ import annotations

TABLE1_COLUMNS = ("all", "5 steps", "50 steps")
TABLE1: dict[str, tuple[float, float, float]] = {
    "rf/lognorm(0.00, 1.00)": (1.54, 1.25, 1.50),
    "rf/lognorm(1.00, 0.60)": (2.08, 3.50, 2.00),
    "rf/lognorm(0.50, 0.60)": (2.71, 8.50, 1.00),
    "rf/mode(1.29)": (2.75, 3.25, 3.00),
    "rf/lognorm(0.50, 1.00)": (2.83, 1.50, 2.50),
    "eps/linear": (2.88, 4.25, 2.75),
    "rf/mode(1.75)": (3.33, 2.75, 2.75),
    "rf/cosmap": (4.13, 3.75, 4.00),
    "edm(0.00, 0.60)": (5.63, 13.25, 3.25),
    "rf": (5.67, 6.50, 5.75),
    "v/linear": (6.83, 5.75, 7.75),
    "edm(0.60, 1.20)": (9.00, 13.00, 9.00),
    "v/cos": (9.17, 12.25, 8.75),
    "edm/cos": (11.04, 14.25, 11.25),
    "edm/rf": (13.04, 15.25, 13.25),
    "edm(-1.20, 1.20)": (15.58, 20.25, 15.00),
}
PAPER_CHOICES = ("rf/lognorm(0.00, 1.00)", "rf/mode(1.29)", "rf/cosmap")  # the timestep densities the paper recommends
PAPER_50_STEP_CFG = 5.0
PAPER_EVAL = "COCO-2014 val prompts and reference (paper); 1000 samples per setting; CLIP score and CLIP-feature FID"
PAPER_CFG_DROPOUT = "three text encoders each dropped independently, 46.4% of samples without any text (paper)"


def paper_column(column: str) -> dict[str, float]:
    """One column of Table 1 (``all``, ``5 steps`` or ``50 steps``) by variant."""
    index = TABLE1_COLUMNS.index(column)
    return {variant: values[index] for variant, values in TABLE1.items()}


def is_rf_family(variant: str) -> bool:
    """Whether a variant trains on the rectified-flow path (``rf``, ``rf/<density>``): Figure 3's "rf" group."""
    return variant == "rf" or variant.startswith("rf/")
