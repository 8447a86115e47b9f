"""JSON request bodies: parsed once, strictly, and checked against Docker's own field
names (the objects themselves are in schema.py)."""
import json
import math

from .decision import READ_DIFFERENTLY, Refused, _q


class Obj:
    """A JSON object of Docker's API: its exact field names and their kinds."""

    def __init__(self, desc: str, fields: dict):
        self.desc, self.fields = desc, fields

    def extend(self, desc: str, **more) -> "Obj":
        return Obj(desc, {**self.fields, **more})


S, B, I, U, F, ANY, SLICE = "str", "bool", "int", "uint", "float", "any", "strslice"  # noqa: E741
SS = ("list", S)
SM = ("map", S)


def L(kind):  # a list of kind
    return ("list", kind)


def M(kind):
    return ("map", kind)


KIND_NAMES = {S: "a string", B: "true or false", I: "a whole number", U: "a whole number of 0 or more",
              F: "a number", SLICE: "a string or a list of strings", "list": "a list", "map": "an object"}


def parse_json(body: bytes):
    """The JSON value of a body, read as Go reads it where that matters, refusing what Go
    would read differently: duplicate keys (Go keeps the last), invalid UTF-8 or lone
    surrogates (Go substitutes U+FFFD), NaN/Infinity, numbers out of range."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("a request body that is not UTF-8 text", READ_DIFFERENTLY) from None

    def pairs(items):
        obj = {}
        for key, value in items:
            if key in obj:
                raise Refused(f"a duplicate field {_q(key)} in the request body",
                              "the engine would act on the last copy, which a check of the first would miss")
            obj[key] = value
        return obj

    def constant(name):
        raise ValueError(name)

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except Refused:
        raise
    except (ValueError, RecursionError):
        raise Refused("a request body that is not valid JSON",
                      "there is nothing this check can read") from None
    _scan(value)
    return value


def _scan(value, depth: int = 0) -> None:
    if depth > 64:
        raise Refused("a request body nested this deeply", READ_DIFFERENTLY)
    if isinstance(value, str):
        _text(value)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 64):
            raise Refused("a number out of range in the request body", READ_DIFFERENTLY)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Refused("a number out of range in the request body", READ_DIFFERENTLY)
    elif isinstance(value, list):
        for item in value:
            _scan(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _text(key)
            _scan(item, depth + 1)


def _text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused("a lone surrogate (\\ud800-\\udfff) in the request body", READ_DIFFERENTLY) from None



def check(value, kind, where: Obj | None = None, name: str = ""):
    """`value` checked against `kind` (Go's view of its type); returns it unchanged. Every
    object key must be one of the exact field names of its Obj."""
    if value is None:
        return None
    if isinstance(kind, Obj):
        if not isinstance(value, dict):
            raise _wrong(where, name, "an object")
        for key, item in value.items():
            if key not in kind.fields:
                raise Refused(f"an unknown field {_q(key)} in {kind.desc}{_hint(key, kind)}",
                              "only Docker's own field names, spelled exactly, are accepted, so that "
                              "the engine reads what this check read")
            check(item, kind.fields[key], kind, key)
        return value
    if kind == ANY:
        return value
    if kind == S:
        ok = isinstance(value, str)
    elif kind == B:
        ok = isinstance(value, bool)
    elif kind == I:
        ok = isinstance(value, int) and not isinstance(value, bool) and value < (1 << 63)
    elif kind == U:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif kind == F:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == SLICE:
        ok = isinstance(value, str) or (isinstance(value, list) and all(
            v is None or isinstance(v, str) for v in value))
    elif kind[0] == "list":
        if not isinstance(value, list):
            raise _wrong(where, name, "a list")
        for item in value:
            check(item, kind[1], where, name)
        return value
    elif kind[0] == "map":
        if not isinstance(value, dict):
            raise _wrong(where, name, "an object")
        for item in value.values():
            check(item, kind[1], where, name)
        return value
    else:  # pragma: no cover - a mistake in the schema
        raise AssertionError(kind)
    if not ok:
        raise _wrong(where, name, KIND_NAMES[kind])
    return value


def _wrong(where: Obj | None, name: str, expected: str) -> Refused:
    place = f" in {where.desc}" if where else ""
    return Refused(f"the value of {_q(name)}{place}", f"Docker expects {expected} there")


def _hint(key: str, obj: Obj) -> str:
    folded = key.casefold()
    for name in obj.fields:
        if name.casefold() == folded:
            return f" (Docker's field is {_q(name)})"
    return ""


def strs(value) -> list[str]:
    """A StrSlice (Go reads a string or a list of strings) as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [v or "" for v in value]



def body_of(obj: Obj):
    def checker(body, resolve):
        return check(body, obj)
    return checker
