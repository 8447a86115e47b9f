"""A pytest plugin for `whale lesson test`: write each failed notebook cell to a JSON file.

nbval's own report shows a failed cell's source and "exit status 1", not what the cell
printed, which is what an author needs to see. With WHALE_LESSON_REPORT set, every
failed cell becomes one JSON line there: its number, source, nbval's message and the
output the cell produced in this run.
"""
from __future__ import annotations

import json
import os

import pytest


def _output_text(outputs) -> str:
    text = ""
    for out in outputs or []:
        kind = out.get("output_type")
        if kind == "stream":
            text += out.get("text", "")
        elif kind == "error":
            text += f"[{out.get('ename')}: {out.get('evalue')}]\n"
        elif kind in ("display_data", "execute_result"):
            text += out.get("data", {}).get("text/plain", "")
    return text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get("WHALE_LESSON_REPORT")
    if not path or not report.failed or not hasattr(item, "cell_num"):
        return
    longrepr = str(report.longrepr)
    message = "Cell outputs differ" if "Cell outputs differ" in longrepr else \
        "the cell failed (its last command exited non-zero)" \
        if "caused an exception" in longrepr else longrepr.splitlines()[0][:200]
    diff = longrepr.split("Traceback:", 1)[1].strip() if message == "Cell outputs differ" \
        and "Traceback:" in longrepr else ""
    entry = {"cell": item.cell_num, "source": item.cell.source, "message": message,
             "output": _output_text(item.test_outputs), "diff": diff, "when": report.when}
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
