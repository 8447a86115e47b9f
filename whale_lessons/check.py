"""`whale-check EXERCISE [--hint N]`: look at the learner's engine and say whether an
exercise is done, and if not, what is missing and (asked for) a hint that fits it.

Each lesson's check cells call it. It prints one line starting with "✔" and exits 0 when
the exercise is done; otherwise it prints what is still missing and how to ask for a hint,
and exits 1 (so the cell shows as failed). `--hint 1`, `2` and `3` say more and more about
*what is missing right now*: level 1 names the concept, level 2 the command or flag, level 3
is nearly the answer (never the solution to copy). Checks look at the engine itself
(containers, images, volumes, networks, services), never at the commands the learner typed,
so any correct way of doing the exercise passes.

The checks are in `whale_lessons/checks/` (one module per lesson), on the framework in
`whale_lessons/exercises.py`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request

from whale_core.layout import PROGRESS_URL_VARIABLE

from . import checks  # noqa: F401 - registers every lesson's check
from .exercises import CHECKS, HINT_LEVELS, Exercise, Missing, Verdict, engine_client

__all__ = ["CHECKS", "HINT_LEVELS", "Exercise", "Missing", "Verdict", "engine_client",
           "evaluate", "examine", "main", "report", "run_check", "verdict_text"]


# -- running a check ----------------------------------------------------------------
def examine(name: str, client) -> Verdict:
    """Run the check `name` against `client`'s engine. A Docker error is not caught
    (the caller decides)."""
    try:
        return Verdict(True, CHECKS[name].func(client))
    except Missing as missing:
        return Verdict(False, missing.reason, missing.hints)


def evaluate(name: str, client) -> tuple[bool, str]:
    """(done, what to say): `examine` for callers that need no hints (the hub's
    progress service)."""
    verdict = examine(name, client)
    return verdict.done, verdict.text


def verdict_text(name: str, verdict: Verdict, hint: int | None = None) -> str:
    """What whale-check prints: the verdict, then how to ask for a hint, or hint `hint`."""
    if verdict.done:
        return f"✔ Well done: {verdict.text}."
    text = f"✘ Not yet: {verdict.text}."
    if hint is None:
        return text + f"\n  Hint: run `whale-check {name} --hint 1` (then 2 and 3 say more)."
    said = verdict.hints[hint - 1]
    text += f"\n  Hint {hint} of {HINT_LEVELS}: {said}{'' if said.endswith(('?', '.')) else '.'}"
    if hint < HINT_LEVELS:
        text += f"\n  (`whale-check {name} --hint {hint + 1}` says more.)"
    return text


def run_check(name: str, out=sys.stdout, hint: int | None = None) -> int:
    """Run one check; print the verdict (with hint `hint`); report it to the hub;
    return the exit status."""
    exercise = CHECKS[name]
    try:
        client = engine_client()
    except Exception as exc:
        print(f"✘ whale-check could not reach your Docker engine: {exc}", file=out)
        return 2
    try:
        verdict = examine(name, client)
    finally:
        client.close()
    print(verdict_text(name, verdict, hint), file=out)
    out.flush()
    report(exercise, verdict.done, verdict.text)
    return 0 if verdict.done else 1


def report(exercise: Exercise, done: bool, detail: str, timeout: float = 5.0) -> bool:
    """Tell the hub's progress service (whale_progress) what this check found, with this
    server's own token. Outside a hub (no service named in the environment) nothing is
    sent. A failure is one quiet line on stderr, never an error: the check's own
    verdict above is what counts for the learner. For a hosted engine the service runs
    the check again itself and records its own finding, not this one."""
    url = os.environ.get(PROGRESS_URL_VARIABLE)
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not url or not token or not url.startswith(("http://", "https://")):
        return False
    body = json.dumps({"lesson": exercise.lesson, "exercise": exercise.name,
                       "passed": done, "detail": detail[:500]}).encode()
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
        url.rstrip("/") + "/api/results", data=body, method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    # The service is on the hub's machine: never through a proxy of the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read()
        return True
    except Exception as exc:
        why = getattr(exc, "reason", None) or exc
        print(f"(whale-check: your teacher's progress page did not get this result: {why})",
              file=sys.stderr)
        return False


# -- a lesson's nodes ------------------------------------------------------------------
#: How a learner gets an engine of more nodes on this site.
MORE_NODES = ("stop your server (File > Hub Control Panel > Stop My Server), then start it "
              "again and choose {wanted} nodes")


def nodes_verdict(wanted: int, client, max_nodes: int | None = None) -> tuple[bool, str]:
    """Whether the learner's engine is a Swarm of at least `wanted` Ready nodes, as one
    line: what a lesson's first cell says (`whale-check --nodes N`), with how to get
    more. `max_nodes` is the most this site gives a learner (None: not known)."""
    swarm = client.info().get("Swarm") or {}
    nodes = []
    if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
        nodes = client.api.nodes()
    names = sorted(n["Description"]["Hostname"] for n in nodes)
    ready = sorted(n["Description"]["Hostname"] for n in nodes if n["Status"]["State"] == "ready")
    have = max(1, len(nodes))
    if len(ready) >= wanted:
        return True, f"✔ Your Swarm has the {wanted} nodes this lesson needs: {', '.join(ready)}."
    if have >= wanted:
        down = [n for n in names if n not in ready]
        return False, (f"✘ This lesson needs {wanted} Ready nodes; {', '.join(down)} "
                       f"{'is' if len(down) == 1 else 'are'} not Ready. To put your Swarm "
                       f"right, {MORE_NODES.format(wanted=have)}.")
    what = "one engine" if have == 1 and not nodes else f"{have} node{'s' if have > 1 else ''}"
    if max_nodes is not None and max_nodes < wanted:
        return False, (f"✘ This lesson needs a Swarm of {wanted} nodes; you have {what}, and "
                       f"this site gives each learner at most {max_nodes}: ask your teacher.")
    return False, (f"✘ This lesson needs a Swarm of {wanted} nodes; you have {what}. "
                   f"To get them, {MORE_NODES.format(wanted=wanted)}.")


def run_nodes(wanted: int, out=sys.stdout) -> int:
    """`whale-check --nodes N`: print nodes_verdict; 0 when there are enough."""
    try:
        client = engine_client()
    except Exception as exc:
        print(f"✘ whale-check could not reach your Docker engine: {exc}", file=out)
        return 2
    top = os.environ.get("WHALE_MAX_NODES", "")
    try:
        done, text = nodes_verdict(wanted, client, int(top) if top.isdigit() else None)
    finally:
        client.close()
    print(text, file=out)
    return 0 if done else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="whale-check", description="Check a lesson exercise on your Docker engine.")
    parser.add_argument("exercise", nargs="?", help="the exercise to check (see --list)")
    parser.add_argument("--hint", type=int, metavar="N",
                        help=f"a hint for what is missing: 1 to {HINT_LEVELS}, each says more")
    parser.add_argument("--list", action="store_true", help="list the exercises")
    parser.add_argument("--nodes", type=int, metavar="N",
                        help="say whether your engine is a Swarm of N nodes (a lesson's first "
                             "cell), and how to get them")
    args = parser.parse_args(argv)
    if args.nodes is not None:
        return run_nodes(args.nodes)
    if args.list or not args.exercise:
        for exercise in CHECKS.values():
            print(f"{exercise.name:16} Lesson {exercise.lesson}: {exercise.summary}")
        return 0 if args.list else 2
    if args.exercise not in CHECKS:
        print(f"whale-check: no exercise called {args.exercise!r}; "
              f"there are: {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    if args.hint is not None and not 1 <= args.hint <= HINT_LEVELS:
        print(f"whale-check: there is no hint {args.hint}: ask for --hint 1, 2 or "
              f"{HINT_LEVELS} (hint {HINT_LEVELS} is nearly the answer)", file=sys.stderr)
        return 2
    return run_check(args.exercise, hint=args.hint)


if __name__ == "__main__":
    sys.exit(main())
