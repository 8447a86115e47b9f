"""Lesson tooling: `whale-check` (the learner's checks, shipped into the single-user
image; it needs only whale_core), the lesson runner behind `whale lesson` (authors), and
the pytest report of lesson runs."""
