"""Grid files and the values they hold: the schema (:mod:`.schema`), the grid and its cells
(:mod:`.grid`), and a sampling setting (:mod:`.setting`). Knows names, not what they configure."""
