"""Running a grid: the queue of cells in an Optuna storage (:mod:`.queue`, :mod:`.storage`), the
worker processes and their supervisor (:mod:`.workers`), signals (:mod:`.signals`) and where
output goes (:mod:`.logs`). A plain run is a queue with one worker."""
