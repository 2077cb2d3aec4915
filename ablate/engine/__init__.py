"""One cell, start to finish: the Lightning module and its data order (:mod:`.train`, :mod:`.batches`,
:mod:`.ema`), device policy (:mod:`.accel`), progress and divergence (:mod:`.monitor`), checkpoints
(:mod:`.checkpointing`), sampling and scoring (:mod:`.evaluate`), and the cell runner that ties them
and writes the records (:mod:`.runner`); :mod:`.benchmark` times that path."""
