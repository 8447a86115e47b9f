"""Who may see whose progress, from the model JupyterHub gives for a request's token or
OAuth session (`HubAuth.get_user`: name, kind, admin, groups, scopes).

Pure functions, so the rules are tested without a hub (tests/test_progress.py).
"""
from __future__ import annotations

from jupyterhub.services.auth import check_scopes

from . import INSTRUCTORS_GROUP, READ_SCOPE

#: Why a request is refused, in one sentence each (the 403 pages and API answers say it).
NOT_SIGNED_IN = "You are not signed in to the hub: sign in, then open this page again."
NOT_INSTRUCTOR = (f"Only instructors (members of the hub's `{INSTRUCTORS_GROUP}` group) and "
                  "admins see every learner's progress; your own is at My progress.")
NOT_A_LEARNER = "Only a learner's own server reports results: this token is not a learner's."


def _is_user(model: dict | None) -> bool:
    return bool(model) and model.get("kind", "user") == "user"


def is_instructor(model: dict | None) -> bool:
    """A user who sees everyone: a hub admin, a member of the instructors group, or the
    holder of the service's read scope without a filter (a role an operator made)."""
    if not _is_user(model):
        return False
    return bool(model.get("admin") or INSTRUCTORS_GROUP in (model.get("groups") or ())
                or check_scopes({READ_SCOPE}, set(model.get("scopes") or ())))


def may_read(model: dict | None, learner: str) -> bool:
    """Whether the caller may read `learner`'s progress: their own, or as an instructor,
    or with the read scope filtered to that learner."""
    if not _is_user(model):
        return False
    if model.get("name") == learner or is_instructor(model):
        return True
    return bool(check_scopes({f"{READ_SCOPE}!user={learner}"}, set(model.get("scopes") or ())))


def may_report(model: dict | None) -> bool:
    """Results are a learner's own: only a user's token may post them (for that user)."""
    return _is_user(model) and bool(model.get("name"))
