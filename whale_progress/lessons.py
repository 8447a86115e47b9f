"""Where a learner stands on each lesson, from their exercises' results.

A lesson is
    "not-started"  when no check of any of its exercises has been recorded;
    "in-progress"  when a check was recorded (passed or not yet) but not every exercise
                   has passed;
    "done"         when every one of its exercises has passed.
A lesson that is done is `verified` when the hub checked every one of its exercises
itself, and `self_reported` when one of them is the learner's word only (their own
engine): shown so wherever a lesson's state is shown (the notebook's file browser).

Pure, so it is tested without a hub (tests/test_progress.py).
"""
from __future__ import annotations

from collections import defaultdict

NOT_STARTED, IN_PROGRESS, DONE = "not-started", "in-progress", "done"
PASSED = ("self-reported", "verified")


def lesson_states(items: list[dict]) -> list[dict]:
    """`items`: one learner's exercises as `Progress.progress_of` gives them (each with
    `lesson`, `exercise`, `status`: None, "not-yet", "self-reported" or "verified").
    Returns one entry per lesson, in lesson order."""
    by_lesson: dict[int, list[dict]] = defaultdict(list)
    for item in items:
        by_lesson[item["lesson"]].append(item)
    out = []
    for lesson in sorted(by_lesson):
        exercises = by_lesson[lesson]
        statuses = [e["status"] for e in exercises]
        passed = [s for s in statuses if s in PASSED]
        if len(passed) == len(statuses):
            state = DONE
        elif any(s is not None for s in statuses):
            state = IN_PROGRESS
        else:
            state = NOT_STARTED
        out.append({
            "lesson": lesson,
            "status": state,
            "passed": len(passed),
            "exercises": [{"exercise": e["exercise"], "status": e["status"],
                           "summary": e.get("summary", "")} for e in exercises],
            "verified": state == DONE and all(s == "verified" for s in statuses),
            "self_reported": "self-reported" in passed,
        })
    return out
