"""The progress database: one row per learner and exercise.

SQLite by default (a file beside the hub's own database); any SQLAlchemy URL works, so a
site on PostgreSQL gives `--db-url postgresql://…` (the hub's server, a database of its
own). Only SQLAlchemy Core, portable statements, and one writer (the service).

A row's `status` only goes up: "not-yet" < "self-reported" < "verified". A lesson's
cleanup cell removes what the exercise made, and a later failing check must not take
back what was done; a verified pass stays verified if the learner moves to their own
engine and reports from there. The latest attempt is kept beside it (`last_passed`,
`last_detail`, `last_source`).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass

import sqlalchemy as sa

#: Statuses, lowest first.
STATUSES = ("not-yet", "self-reported", "verified")
#: Who found a result: the hub's own check ("hub") or the learner's server ("learner").
SOURCES = ("hub", "learner")

metadata = sa.MetaData()
results = sa.Table(
    "results", metadata,
    sa.Column("username", sa.Unicode(255), primary_key=True),
    sa.Column("exercise", sa.Unicode(64), primary_key=True),
    sa.Column("lesson", sa.Integer, nullable=False),
    sa.Column("status", sa.Unicode(16), nullable=False),
    sa.Column("passed_at", sa.DateTime(timezone=True)),
    sa.Column("last_checked", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_passed", sa.Boolean, nullable=False),
    sa.Column("last_detail", sa.UnicodeText, nullable=False, default=""),
    sa.Column("last_source", sa.Unicode(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
)


@dataclass(frozen=True)
class Result:
    """What is known of one learner's exercise."""

    username: str
    exercise: str
    lesson: int
    status: str
    passed_at: _dt.datetime | None
    last_checked: _dt.datetime
    last_passed: bool
    last_detail: str
    last_source: str
    attempts: int

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def self_reported(self) -> bool:
        return self.status == "self-reported"

    def as_json(self) -> dict:
        out = asdict(self)
        for key in ("passed_at", "last_checked"):
            out[key] = out[key].isoformat() if out[key] else None
        out.update(verified=self.verified, self_reported=self.self_reported)
        return out


def status_of(passed: bool, verified: bool) -> str:
    """The status one attempt earns: a pass the hub checked itself is verified."""
    if not passed:
        return "not-yet"
    return "verified" if verified else "self-reported"


def _utc(value: _dt.datetime | None) -> _dt.datetime | None:
    # SQLite gives back naive datetimes: they were stored in UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value


class ProgressStore:
    """Results by learner and exercise, in the database at `url`."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def renumber(self, lessons: dict[str, int]) -> int:
        """File each exercise's results under the lesson it is in now (`lessons`: exercise
        to lesson), for results kept while the curriculum was numbered otherwise. Returns
        how many rows moved."""
        moved = 0
        with self.engine.begin() as conn:
            for exercise, lesson in lessons.items():
                moved += conn.execute(results.update().where(
                    (results.c.exercise == exercise) & (results.c.lesson != lesson)).values(
                    lesson=lesson)).rowcount
        return moved

    def record(self, username: str, exercise: str, lesson: int, *, passed: bool,
               verified: bool, detail: str, now: _dt.datetime | None = None) -> Result:
        """Add one attempt; return the row as it is now. `verified`: the hub ran the
        check itself (then `detail` is its finding); otherwise the learner's server
        reported it."""
        now = now or _dt.datetime.now(_dt.timezone.utc)
        earned = status_of(passed, verified)
        source = "hub" if verified else "learner"
        key = (results.c.username == username) & (results.c.exercise == exercise)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(results).where(key)).mappings().first()
            if row is None:
                conn.execute(results.insert().values(
                    username=username, exercise=exercise, lesson=lesson, status=earned,
                    passed_at=now if passed else None, last_checked=now, last_passed=passed,
                    last_detail=detail, last_source=source, attempts=1))
            else:
                higher = STATUSES.index(earned) > STATUSES.index(row["status"])
                conn.execute(results.update().where(key).values(
                    lesson=lesson, status=earned if higher else row["status"],
                    passed_at=now if higher else row["passed_at"], last_checked=now,
                    last_passed=passed, last_detail=detail, last_source=source,
                    attempts=row["attempts"] + 1))
            return self._result(conn.execute(sa.select(results).where(key)).mappings().one())

    def of(self, username: str) -> list[Result]:
        """One learner's results, in curriculum order."""
        query = sa.select(results).where(results.c.username == username).order_by(
            results.c.lesson, results.c.exercise)
        with self.engine.connect() as conn:
            return [self._result(row) for row in conn.execute(query).mappings()]

    def everyone(self) -> list[Result]:
        """Every learner's results, by learner, in curriculum order."""
        query = sa.select(results).order_by(results.c.username, results.c.lesson,
                                            results.c.exercise)
        with self.engine.connect() as conn:
            return [self._result(row) for row in conn.execute(query).mappings()]

    @staticmethod
    def _result(row) -> Result:
        values = dict(row)
        values["passed_at"] = _utc(values["passed_at"])
        values["last_checked"] = _utc(values["last_checked"])
        return Result(**values)
