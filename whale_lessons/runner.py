"""Lessons: find, scaffold, record and test the notebooks in `lessons/`.

A lesson is `lessons/NN-slug.ipynb` with the `docker` kernel and a `howtowhale` entry in
its metadata (`lesson`, `title`, `swarm`). Cells carry tags that mean something here:

    solution          the reference solution of an exercise (hidden from learners;
                      CI runs it so the check after it passes)
    check             a `whale-check` cell; before the solution it is also tagged
                      `raises-exception` and its stored output says what is missing
    cleanup           leaves the engine as the lesson found it
    setup             a visible cell a learner runs that makes a challenge's broken state
    nbval-ignore-output, raises-exception, nbval-skip   nbval's own markers

`whale lesson test` runs each lesson under nbval in a copy of it, against a fresh
TLS-only engine that uses the lesson registry mirror, and prints the cell that failed
and why. `whale lesson record` executes a lesson the same way and stores its outputs
as the reference nbval compares against.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import nbformat

from whale_core.store import CredentialStore
from whale_hub.cluster import SandboxCluster
from whale_hub.specs import EngineSettings
from whale_site import images
from whale_site.registry import RegistryMirror, default_mirror

LESSONS_DIR = images.SOURCE / "lessons"
SANITIZE = LESSONS_DIR / "sanitize.cfg"
KERNEL = {"name": "docker", "display_name": "Docker", "language": "bash"}
_LESSON_FILE = re.compile(r"^(\d\d)-[a-z0-9-]+\.ipynb$")
CELL_TIMEOUT = 180
SLOW_CELL = 15.0  # seconds; `whale lesson record` points out slower cells


# -- finding lessons ------------------------------------------------------------------
def lesson_paths(directory: Path = LESSONS_DIR) -> list[Path]:
    """Every lesson, in curriculum order."""
    return sorted(p for p in directory.glob("*.ipynb") if _LESSON_FILE.match(p.name))


def find_lessons(names: list[str] | None, directory: Path = LESSONS_DIR) -> list[Path]:
    """Lessons by path, file name, stem or number ("3", "03", "03-ports"); all if none."""
    if not names:
        return lesson_paths(directory)
    found = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            found.append(path.resolve())
            continue
        matches = [p for p in lesson_paths(directory)
                   if p.stem == name or p.name == name or p.stem.split("-", 1)[0] == name.zfill(2)
                   or p.stem.split("-", 1)[1:] == [name]]
        if not matches:
            raise LookupError(f"no lesson called {name!r} in {directory}")
        found.extend(matches)
    return found


def lesson_meta(nb) -> dict:
    return dict(nb.metadata.get("howtowhale", {}))


def lesson_nodes(meta: dict) -> int:
    """The nodes a lesson needs (its metadata's `nodes`; 1 if it says nothing): it is
    tested on a fresh Swarm of that many engines, and its first cell checks them
    (`whale-check --nodes N`)."""
    return int(meta.get("nodes") or 1)


def cell_tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


# -- scaffolding ----------------------------------------------------------------------
def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "lesson"


def _md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def _code(text: str, *tags: str, hidden: bool = False):
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    if hidden:
        cell.metadata["jupyter"] = {"source_hidden": True}
    return cell


def new_lesson(title: str, directory: Path = LESSONS_DIR, swarm: bool = False,
               number: int | None = None, nodes: int = 1) -> Path:
    """Write `NN-slug.ipynb`, the next lesson (or lesson `number`, a free one), with the
    house structure; return its path."""
    existing = lesson_paths(directory)
    taken = {int(p.name[:2]) for p in existing}
    if number is None:
        number = max(taken) + 1 if taken else 1
    elif number in taken or not 1 <= number <= 99:
        raise ValueError(f"lesson {number} is taken (or not 1 to 99): lessons are "
                         f"{', '.join(str(n) for n in sorted(taken))}")
    path = directory / f"{number:02d}-{slugify(title)}.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "bash"}
    nb.metadata["howtowhale"] = {"lesson": number, "title": title, "swarm": swarm}
    if nodes > 1:
        nb.metadata["howtowhale"]["nodes"] = nodes
    nb.cells = [
        _md(f"""
# Lesson {number}: {title}

**In this lesson you will**
- TODO: one line per objective, in words a beginner uses.

Run each cell with **Shift+Enter**. Every command runs on *your own* Docker engine.
"""),
        *([_code(f"whale-check --nodes {nodes}")] if nodes > 1 else []),
        _md("""
## TODO: the first idea

Explain one idea in a few sentences, then let the learner try it.
"""),
        _code("docker run --rm busybox echo 'Hello from a container'"),
        _md("""
## Exercise

TODO: say what to do, without giving the command away. Run the check first:
it tells you what is still missing.
"""),
        _code("whale-check first-container", "check", "raises-exception"),
        _md("Your turn: type your command in the cell below and run it."),
        _code("# your command here"),
        _code('docker run --name my-first busybox echo "I ran a container"',
              "solution", hidden=True),
        _code("whale-check first-container", "check"),
        _md("## Clean up\n\nLeave your engine as you found it:"),
        _code("docker rm -f my-first", "cleanup"),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(path)
    nbformat.write(nb, path)
    return path


# -- a fresh engine per lesson ------------------------------------------------------------
def learner_env(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """`env` with the Docker CLI learners have (images/cli: Debian 13's docker-cli with
    `docker compose` and `docker buildx`) first on PATH, and a Docker configuration of
    this run's own that holds its plugins. Lessons are recorded and tested with it, so
    their outputs are what a learner sees, whichever CLI this machine has."""
    cli = images.learner_cli()
    config = workdir / "docker-config"
    config.mkdir(exist_ok=True)
    plugins = config / "cli-plugins"
    if not plugins.is_symlink():
        plugins.symlink_to(cli / "cli-plugins")
    return dict(env, PATH=f"{cli / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}",
                DOCKER_CONFIG=str(config))


@contextmanager
def lesson_engine(name: str, mirror: RegistryMirror, workdir: Path, swarm: bool = False,
                  host=None, labels: dict[str, str] | None = None, nodes: int = 1):
    """A fresh TLS engine using the mirror (a Swarm of `nodes` engines if more than
    one); yields the environment a kernel needs."""
    own_host = host is None
    host = host or docker.from_env(timeout=60)
    settings = EngineSettings(registry_mirror=mirror.url, swarm=swarm,
                              labels={"org.howtowhale.owner": "lesson-test", **(labels or {})})
    engine = SandboxCluster(f"whale-lesson-{name}-{os.getpid()}", workdir / "engine", host=host,
                            settings=settings, nodes=nodes)
    try:
        engine.start(timeout=90)
        store = CredentialStore(workdir / "credentials")
        store.install_directory(engine.bundle_dir)
        env = learner_env(workdir, dict(os.environ, WHALE_CREDENTIALS=str(store.root)))
        # requests lets REQUESTS_CA_BUNDLE override a client's own CA, so tools built on
        # it (the docker SDK of whale-check) would check the engine's certificate against this
        # machine's proxy CA and fail. Lessons reach nothing beyond the engine.
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            env.pop(name, None)
        yield env
    finally:
        engine.remove()
        if own_host:
            host.close()


def _workspace(lesson: Path, workdir: Path) -> Path:
    """A copy of the lesson in its own directory, so files it writes go there."""
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    copy = run_dir / lesson.name
    shutil.copy2(lesson, copy)
    return copy


# -- testing (nbval) ---------------------------------------------------------------------
@dataclass
class CellFailure:
    """One failed cell of a lesson, as `whale lesson test` reports it."""

    cell: int
    source: str
    message: str
    output: str = ""
    diff: str = ""

    def describe(self) -> str:
        first = self.source.strip().splitlines()[0] if self.source.strip() else "(empty)"
        text = f"  Cell {self.cell}: {self.message}\n    $ {first}\n"
        if self.diff.strip():
            text += "".join(f"    | {line}\n" for line in self.diff.rstrip().splitlines()[-25:])
        if self.output.strip() and self.output.strip() not in self.diff:
            # nbval's diff may only name a stream ("Unexpected output fields: {'stderr'}").
            text += "    | this run printed:\n"
            text += "".join(f"    | {line}\n" for line in self.output.rstrip().splitlines()[-25:])
        return text


@dataclass
class LessonResult:
    """The outcome of running one lesson under nbval."""

    lesson: str
    passed: bool
    seconds: float
    cells: int = 0
    failures: list[CellFailure] = field(default_factory=list)
    log: str = ""

    def describe(self) -> str:
        head = f"{'PASS' if self.passed else 'FAIL'} {self.lesson} ({self.cells} cells, " \
               f"{self.seconds:.1f} s)"
        if self.passed:
            return head
        body = "".join(f.describe() for f in self.failures)
        if not self.failures:
            body = "".join(f"    | {line}\n" for line in self.log.rstrip().splitlines()[-30:])
        return head + "\n" + body.rstrip("\n")


_PYTEST_INI = """[pytest]
addopts = -p no:cacheprovider
"""


def validate_lesson(lesson: Path, mirror: RegistryMirror, *, host=None,
                labels: dict[str, str] | None = None) -> LessonResult:
    """Run one lesson under nbval against a fresh engine."""
    start = time.monotonic()
    nb = nbformat.read(lesson, as_version=4)
    meta = lesson_meta(nb)
    cells = sum(1 for c in nb.cells if c.cell_type == "code")
    with tempfile.TemporaryDirectory(prefix=f"whale-{lesson.stem}-") as tmp:
        workdir = Path(tmp)
        copy = _workspace(lesson, workdir)
        report = workdir / "report.jsonl"
        (workdir / "pytest.ini").write_text(_PYTEST_INI)
        with lesson_engine(lesson.stem[:20], mirror, workdir, swarm=bool(meta.get("swarm")),
                           host=host, labels=labels, nodes=lesson_nodes(meta)) as env:
            env["WHALE_LESSON_REPORT"] = str(report)
            argv = [sys.executable, "-m", "pytest", "-q", "--nbval", "-c",
                    str(workdir / "pytest.ini"), "--rootdir", str(copy.parent),
                    "-p", "whale_lessons.report", f"--nbval-cell-timeout={CELL_TIMEOUT}",
                    "--nbval-sanitize-with", str(SANITIZE), "--color=no", str(copy)]
            proc = subprocess.run(argv, env=env, cwd=copy.parent, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        failures = []
        if report.exists():
            for line in report.read_text().splitlines():
                d = json.loads(line)
                failures.append(CellFailure(d["cell"], d["source"], d["message"],
                                            d["output"], d["diff"]))
    return LessonResult(lesson.stem, proc.returncode == 0, time.monotonic() - start,
                        cells, failures, proc.stdout)


def validate_lessons(lessons: list[Path], mirror: RegistryMirror, *, jobs: int = 1, host=None,
                 labels: dict[str, str] | None = None, out=sys.stdout) -> list[LessonResult]:
    """Run lessons (`jobs` at a time), printing each result as it comes."""
    def one(path):
        result = validate_lesson(path, mirror, host=host, labels=labels)
        print(result.describe(), file=out, flush=True)
        return result
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, lessons))


# -- recording reference outputs ------------------------------------------------------------
def execute_cells(nb, env: dict[str, str], cwd: Path, timeout: float = CELL_TIMEOUT,
                  log=sys.stdout) -> bool:
    """Run every code cell of `nb` in a docker kernel; store outputs as a notebook shows them.

    A cell whose output was redrawn (progress bars: clear_output) cannot be compared by
    nbval, which does not apply clear_output, so it gets the `nbval-ignore-output` tag.
    Returns False at the first cell that fails unexpectedly.
    """
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=nb.metadata.get("kernelspec", KERNEL)["name"])
    km.start_kernel(env=env, cwd=str(cwd))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        count = 0
        for index, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            count += 1
            started = time.monotonic()
            msg_id = kc.execute(cell.source, allow_stdin=False)
            outputs, redrawn, error = [], False, None
            deadline = time.monotonic() + timeout
            while True:
                try:
                    msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
                except queue.Empty:
                    raise TimeoutError(f"cell {index} did not finish in {timeout} s") from None
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["header"]["msg_type"], msg["content"]
                if kind == "status" and content["execution_state"] == "idle":
                    break
                if kind == "clear_output":
                    outputs, redrawn = [], True
                elif kind == "stream":
                    if outputs and outputs[-1].output_type == "stream" and \
                            outputs[-1].name == content["name"]:
                        outputs[-1].text += content["text"]
                    else:
                        outputs.append(nbformat.v4.new_output("stream", name=content["name"],
                                                              text=content["text"]))
                elif kind in ("display_data", "execute_result"):
                    outputs.append(nbformat.v4.new_output("display_data", data=content["data"],
                                                          metadata=content.get("metadata", {})))
                elif kind == "error":
                    error = content
                    outputs.append(nbformat.v4.new_output(
                        "error", ename=content["ename"], evalue=content["evalue"],
                        traceback=content["traceback"]))
            cell.outputs = outputs
            cell.execution_count = count
            seconds = time.monotonic() - started
            if seconds > SLOW_CELL:
                print(f"  cell {index} took {seconds:.0f} s (CI runs every lesson on every "
                      "change: keep cells quick)", file=log)
            tags = cell_tags(cell)
            if redrawn and "nbval-ignore-output" not in tags:
                cell.metadata.setdefault("tags", []).append("nbval-ignore-output")
                print(f"  cell {index}: output is redrawn in place; tagged nbval-ignore-output",
                      file=log)
            if error and "raises-exception" not in tags:
                text = "".join(o.get("text", "") for o in outputs)
                print(f"  cell {index} failed: {cell.source.splitlines()[0] if cell.source else ''}"
                      f"\n{text}", file=log)
                return False
        return True
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        km.context.destroy(linger=0)


def record_lesson(lesson: Path, mirror: RegistryMirror, *, host=None,
                  labels: dict[str, str] | None = None, log=sys.stdout) -> bool:
    """Execute a lesson on a fresh engine and store its outputs as nbval's reference."""
    nb = nbformat.read(lesson, as_version=4)
    meta = lesson_meta(nb)
    with tempfile.TemporaryDirectory(prefix=f"whale-{lesson.stem}-") as tmp:
        workdir = Path(tmp)
        copy = _workspace(lesson, workdir)
        with lesson_engine(lesson.stem[:20], mirror, workdir, swarm=bool(meta.get("swarm")),
                           host=host, labels=labels, nodes=lesson_nodes(meta)) as env:
            ok = execute_cells(nb, env, copy.parent, log=log)
    if ok:
        nbformat.write(nb, lesson)
    return ok


# -- the `whale lesson` command ------------------------------------------------------------
def add_arguments(sub) -> None:
    """Add `whale lesson new|test|record` to the `whale` command's subparsers."""
    lesson = sub.add_parser("lesson", help="write and test lessons")
    lsub = lesson.add_subparsers(dest="lesson_command", required=True)
    new = lsub.add_parser("new", help="scaffold the next lesson notebook")
    new.add_argument("title")
    new.add_argument("--swarm", action="store_true", help="the lesson needs a Swarm engine")
    new.add_argument("--number", type=int, help="a free lesson number (default: the next)")
    new.add_argument("--nodes", type=int, default=1, choices=range(1, 6), metavar="N",
                     help="the lesson needs a Swarm of N nodes (2 to 5)")
    new.set_defaults(func=cmd_new)
    test = lsub.add_parser("test", help="run lessons under nbval, each on a fresh engine")
    test.add_argument("names", nargs="*", help="lesson numbers, names or paths (default: all)")
    test.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("WHALE_LESSON_JOBS", 2)),
                      help="lessons run at the same time (default 2)")
    test.set_defaults(func=cmd_test)
    record = lsub.add_parser("record", help="run lessons and store their outputs as the reference")
    record.add_argument("names", nargs="+")
    record.set_defaults(func=cmd_record)


def cmd_new(args) -> int:
    try:
        path = new_lesson(args.title, swarm=args.swarm, number=args.number, nodes=args.nodes)
    except ValueError as exc:
        print(f"whale: {exc}", file=sys.stderr)
        return 2
    print(f"whale: wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print("  edit it in Jupyter, then: whale lesson record "
          f"{path.stem} && whale lesson test {path.stem}")
    return 0


def cmd_test(args) -> int:
    try:
        lessons = find_lessons(args.names)
    except LookupError as exc:
        print(f"whale: {exc}", file=sys.stderr)
        return 2
    images.ensure_site_images(only=["howtowhale/engine"])
    mirror = default_mirror()
    start = time.monotonic()
    results = validate_lessons(lessons, mirror, jobs=args.jobs)
    failed = [r.lesson for r in results if not r.passed]
    print(f"whale: {len(results) - len(failed)} of {len(results)} lessons passed in "
          f"{time.monotonic() - start:.1f} s" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_record(args) -> int:
    lessons = find_lessons(args.names)
    images.ensure_site_images(only=["howtowhale/engine"])
    mirror = default_mirror()
    ok = True
    for lesson in lessons:
        print(f"whale: recording {lesson.stem} ...", flush=True)
        ok = record_lesson(lesson, mirror) and ok
    return 0 if ok else 1
