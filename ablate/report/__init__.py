"""From records to a leaderboard, without torch: ranking (:mod:`.ranking`), bootstrap statistics
(:mod:`.statistics`, :mod:`.rank_stats`), the paper's numbers (:mod:`.paper`), convergence checks
(:mod:`.diagnostics`), plots (:mod:`.plots`) and the rendered leaderboard (:mod:`.leaderboard`)."""
