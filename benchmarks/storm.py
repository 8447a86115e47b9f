"""A spawn storm: N learners press Start at the same moment, this site against plain JupyterHub.

    python benchmarks/storm.py [--learners 30] [--hubs plain,whale,pooled] [--keep-logs]

Real hubs run one after the other on this machine, each with its proxy:
- "whale": this site's config (WhaleSpawner, a fresh sandbox engine per learner);
- "pooled": the same with a warm pool of engines as large as the class (whale_hub.pool),
  full before the storm, as an operator fills it before a class;
- "plain": the same config with DockerSpawner and a single-user image holding only
  JupyterHub, Notebook and bash_kernel, and no engine at all (the baseline).

Each learner is a browser-like HTTP session through the proxy: it signs in on the login
form first (not timed). Then all of them, released by one barrier, open /hub/spawn at the
same moment, follow the redirect to the spawn-pending page, read the progress event
stream the page reads, and then load their server's page, /user/NAME/ (with the
single-user server's own OAuth redirects, to its default URL), as a browser does. A
learner's time is from its /hub/spawn request to that page answering 200. A failure is
kept with its reason (an HTTP status and what the page said, or the progress stream's
failure message). Meanwhile a probe asks the hub's
REST API for one learner's model every 0.2 s, and its latency is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from hub_fixtures import Hub  # noqa: E402
from spawn import bench_hub, build_plain  # noqa: E402

TIMEOUT = 300.0


@dataclass
class Learner:
    name: str
    session: requests.Session = field(repr=False)
    seconds: float | None = None
    failure: str | None = None
    phases: dict[str, float] = field(default_factory=dict)


def xsrf(session: requests.Session) -> str:
    return session.cookies.get("_xsrf", "")


def _said(html: str) -> str:
    """What an error page says, in one line."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())[:200]


def press_start(hub: Hub, learner: Learner, go: threading.Barrier) -> None:
    """/hub/spawn at the barrier, the spawn-pending page, its progress stream, then the
    learner's server's own page (/user/NAME/, redirected to its default URL)."""
    s, name = learner.session, learner.name
    go.wait()
    t0 = time.perf_counter()
    try:
        r = s.get(f"{hub.url}/hub/spawn/{name}", timeout=TIMEOUT)
        learner.phases["spawn page"] = time.perf_counter() - t0
        if r.status_code != 200:
            learner.failure = f"HTTP {r.status_code} from /hub/spawn: {_said(r.text)}"
            return
        if "/spawn-pending/" in r.url:
            progress = (f"{hub.url}/hub/api/users/{name}/server/progress"
                        f"?_xsrf={xsrf(s)}")
            with s.get(progress, stream=True, timeout=TIMEOUT,
                       headers={"X-XSRFToken": xsrf(s)}) as stream:
                if stream.status_code != 200:
                    learner.failure = f"HTTP {stream.status_code} from the progress stream"
                    return
                for line in stream.iter_lines(decode_unicode=True):
                    if not line or not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("failed"):
                        learner.failure = f"spawn failed: {event.get('message')}"
                        return
                    if event.get("ready"):
                        break
            learner.phases["ready event"] = time.perf_counter() - t0
        deadline = t0 + TIMEOUT
        while True:
            page = s.get(f"{hub.url}/user/{name}/", timeout=TIMEOUT)
            if page.status_code == 200 and "/user/" in page.url:
                break
            if time.perf_counter() > deadline:
                learner.failure = (f"/user/{name}/ still answers HTTP {page.status_code}: "
                                   f"{_said(page.text)}")
                return
            time.sleep(0.1)
        learner.seconds = time.perf_counter() - t0
    except requests.RequestException as exc:
        learner.failure = f"{type(exc).__name__}: {exc}"


def probe_api(hub: Hub, name: str, stop: threading.Event, out: list[float]) -> None:
    """The hub's REST latency while the storm runs: one learner's model every 0.2 s."""
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            hub.api("GET", f"/users/{name}")
            out.append(time.perf_counter() - t0)
        except requests.RequestException:
            out.append(float("inf"))
        stop.wait(0.2)


def storm(hub: Hub, learners: int, label: str) -> dict:
    names = [hub.user(f"{label}{i}") for i in range(learners)]
    crowd = [Learner(name, hub.signed_in(name)) for name in names]
    go = threading.Barrier(learners)
    stop = threading.Event()
    latencies: list[float] = []
    probe = threading.Thread(target=probe_api, args=(hub, names[0], stop, latencies))
    threads = [threading.Thread(target=press_start, args=(hub, learner, go)) for learner in crowd]
    probe.start()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT + 60)
    wall = time.perf_counter() - t0
    stop.set()
    probe.join()
    for learner in crowd:
        learner.session.close()
    return {"learners": crowd, "api": latencies, "wall": wall}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(results: dict[str, dict]) -> None:
    print(f"{'':<7}{'ready p50':>10}{'p95':>9}{'max':>9}{'failed':>8}"
          f"{'API p50':>10}{'API p95':>9}{'API max':>9}")
    for label, r in results.items():
        times = [lr.seconds for lr in r["learners"] if lr.seconds is not None]
        failed = [lr for lr in r["learners"] if lr.failure]
        api = [x for x in r["api"] if x != float("inf")] or [float("nan")]
        cells = [f"{quantile(times, q):>7.2f} s" for q in (0.5, 0.95, 1.0)] if times else \
            [f"{'-':>9}"] * 3
        print(f"{label:<7}{''.join(cells)}{len(failed):>8}"
              + "".join(f"{quantile(api, q) * 1000:>7.0f} ms" for q in (0.5, 0.95, 1.0)))
        for reason in sorted({lr.failure for lr in failed}):
            count = sum(lr.failure == reason for lr in failed)
            print(f"    {count} failed: {reason}")
    for label in ("whale", "pooled"):
        if {label, "plain"} <= results.keys():
            w = [lr.seconds for lr in results[label]["learners"] if lr.seconds is not None]
            p = [lr.seconds for lr in results["plain"]["learners"] if lr.seconds is not None]
            if w and p:
                print(f"\nratio {label}/plain: p50 {quantile(w, 0.5) / quantile(p, 0.5):.2f}, "
                      f"p95 {quantile(w, 0.95) / quantile(p, 0.95):.2f}, "
                      f"max {max(w) / max(p):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--learners", type=int, default=30)
    ap.add_argument("--hubs", default="plain,whale,pooled",
                    help="which hubs to storm (comma-separated; the ratios need plain); "
                         "pooled: this site with a warm pool as large as the class")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep each hub's state directory (its hub.log has a line per spawn)")
    args = ap.parse_args()
    build_plain()
    results = {}
    for label in args.hubs.split(","):
        with bench_hub(label, keep=args.keep_logs, pool=args.learners) as (hub, phases):
            results[label] = storm(hub, args.learners, label)
            results[label]["phases"] = phases()
        print(f"{label}: {args.learners} learners in {results[label]['wall']:.1f} s", flush=True)
    print(f"\n{args.learners} learners press Start at the same moment (through the proxy)\n")
    report(results)
    for label, r in results.items():
        if r["phases"]:
            slowest = sorted(r["phases"], key=_total, reverse=True)[:3]
            print(f"\n{label}: the three slowest spawns, phase by phase (the spawner's log)")
            print("\n".join(f"  {line}" for line in slowest))


def _total(line: str) -> float:
    m = re.search(r"spawned in ([\d.]+)", line)
    return float(m.group(1)) if m else 0.0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
