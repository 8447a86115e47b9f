"""The host firewall for learners' networks: what a learner's containers may reach.

Every learner's server and engine sit on a Docker bridge network of their own whose
interface is named `whl` + 12 hex digits, so one pattern, `-i whl+`, matches traffic
from any learner (their server, their engine, and every container their engine runs:
those leave the engine NATed to its address on that network). This module keeps the
rules for that traffic in chains of its own, and nothing else:

IPv4, table filter
  INPUT        `-i whl+ -j WHALE-INPUT` (first): traffic to the host itself.
  WHALE-INPUT  1. ESTABLISHED,RELATED: ACCEPT. Replies to connections the host opened
                  (the hub and its proxy talking to a learner's server, the hub's
                  checks of an engine), and ICMP errors about them.
               2. one ACCEPT per port a site registered with install(): the hub's API
                  (learners' servers report to the hub there), the lesson registry
                  mirror (engines pull lesson images there) and the site's other named
                  ports (`extra_ports`: the progress service, where whale-check reports
                  results), on `address` when given.
               3. DROP: everything else. No learner reaches the proxy's API, sshd, the
                  host's dockerd should it listen on TCP, the site's public port, other
                  sites' services, or any other port of any of the host's addresses.
  DOCKER-USER  `-i whl+ -j WHALE-FORWARD` (first): traffic the host forwards.
  WHALE-FORWARD
               1. `-d 169.254.0.0/16` DROP: link-local addresses, where a cloud machine's
                  metadata service (169.254.169.254) hands out the machine's credentials.
               Traffic to another learner's network needs no rule here: Docker's own
                  DOCKER-ISOLATION-STAGE-1/2 chains, which FORWARD runs right after
                  DOCKER-USER, drop every packet from one bridge network to another
                  (tests/test_isolation.py proves it). WHALE-FORWARD never ACCEPTs, so
                  Docker's NAT, port publishing and isolation work as before.
IPv6, table filter (when ip6tables works)
  INPUT, FORWARD  `-i whl+ -j WHALE-INPUT` / `-j WHALE-FORWARD` (first), both DROP
               everything: learners' networks have no IPv6, and a link-local IPv6
               address would otherwise reach every service the host listens to on `::`.

Several sites (test runs side by side, say) share these chains: each registers its
ports under an owner name with install() and takes them away with remove(); the chains
go when the last owner does. Rules of an owner registered with `pid=` go as soon as that
process is gone (at the next install or remove). Every change is one iptables-restore
transaction (so the chains are never seen half-written), made under a lock file.
Needs root (CAP_NET_ADMIN).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

LEARNER_INTERFACES = "whl+"
INPUT_CHAIN = "WHALE-INPUT"
FORWARD_CHAIN = "WHALE-FORWARD"
LINK_LOCAL = "169.254.0.0/16"
_OWNER_TAG = "whale-owner"
_OWNER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class FirewallError(RuntimeError):
    """iptables refused or is missing (not root, say)."""


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


def _run(binary: str, args: list[str], *, input: str | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([binary, "-w", *args] if not binary.endswith("-restore")
                          else [binary, "-w", "5", *args],
                          input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise FirewallError(f"{Path(binary).name} {' '.join(args)}: "
                            f"{(proc.stderr or proc.stdout).strip() or f'status {proc.returncode}'}")
    return proc


class _Family:
    """iptables or ip6tables."""

    def __init__(self, name: str):
        self.name = name
        self.binary = _binary(name)
        self.restore = _binary(f"{name}-restore")

    def usable(self) -> bool:
        return bool(self.binary and self.restore) and \
            _run(self.binary, ["-S", "INPUT"], check=False).returncode == 0

    def has_chain(self, chain: str) -> bool:
        return _run(self.binary, ["-S", chain], check=False).returncode == 0

    def rules(self, chain: str) -> list[str]:
        if not self.has_chain(chain):
            return []
        return [line for line in _run(self.binary, ["-S", chain]).stdout.splitlines()
                if line.startswith("-A ")]

    def has_rule(self, chain: str, spec: list[str]) -> bool:
        return _run(self.binary, ["-C", chain, *spec], check=False).returncode == 0

    def apply(self, chains: dict[str, list[str]], jumps: list[tuple[str, list[str]]]) -> None:
        """Replace the chains' contents and add the jumps that are missing, at once."""
        lines = ["*filter"]
        lines += [f":{chain} - [0:0]" for chain in chains]
        for chain, rules in chains.items():
            lines += [f"-A {chain} {rule}" for rule in rules]
        lines += [f"-I {chain} 1 {' '.join(spec)}" for chain, spec in jumps
                  if not self.has_rule(chain, spec)]
        lines.append("COMMIT")
        _run(self.restore, ["--noflush"], input="\n".join(lines) + "\n")

    def clear(self, chains: list[str], jumps: list[tuple[str, list[str]]]) -> None:
        for chain, spec in jumps:
            while self.has_rule(chain, spec):
                _run(self.binary, ["-D", chain, *spec])
        for chain in chains:
            if self.has_chain(chain):
                _run(self.binary, ["-F", chain])
                _run(self.binary, ["-X", chain])


_V4 = _Family("iptables")
_V6 = _Family("ip6tables")

# `-i whl+ -j CHAIN` from these built-in (or Docker's) chains, per family.
_V4_JUMPS = [("INPUT", ["-i", LEARNER_INTERFACES, "-j", INPUT_CHAIN]),
             ("DOCKER-USER", ["-i", LEARNER_INTERFACES, "-j", FORWARD_CHAIN])]
_V6_JUMPS = [("INPUT", ["-i", LEARNER_INTERFACES, "-j", INPUT_CHAIN]),
             ("FORWARD", ["-i", LEARNER_INTERFACES, "-j", FORWARD_CHAIN])]


def _comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def _v4_chains(owner_rules: list[str]) -> dict[str, list[str]]:
    return {
        INPUT_CHAIN: [
            f"-m conntrack --ctstate RELATED,ESTABLISHED "
            f"{_comment('whale: replies to connections the host opened')} -j ACCEPT",
            *owner_rules,
            f"{_comment('whale: nothing else on the host is for learners')} -j DROP",
        ],
        FORWARD_CHAIN: [
            f"-d {LINK_LOCAL} {_comment('whale: no link-local, no cloud metadata')} -j DROP",
        ],
    }


def _v6_chains() -> dict[str, list[str]]:
    text = _comment("whale: no IPv6 on learner networks")
    return {INPUT_CHAIN: [f"{text} -j DROP"], FORWARD_CHAIN: [f"{text} -j DROP"]}


def _owner_of(rule: str) -> tuple[str, int | None] | None:
    m = re.search(rf'--comment "?{_OWNER_TAG} ([A-Za-z0-9._-]+) pid=(\d+)', rule)
    if not m:
        return None
    return m.group(1), int(m.group(2)) or None


def _alive(pid: int | None) -> bool:
    return pid is None or os.path.exists(f"/proc/{pid}")


def _kept_rules(drop_owner: str | None) -> list[str]:
    """Owner rules now in WHALE-INPUT, without drop_owner's and those of dead processes,
    as iptables-restore lines without their `-A CHAIN`."""
    kept = []
    for line in _V4.rules(INPUT_CHAIN):
        owner = _owner_of(line)
        if owner and owner[0] != drop_owner and _alive(owner[1]):
            kept.append(line.split(" ", 2)[2])
    return kept


@contextlib.contextmanager
def _locked():
    directory = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    with open(directory / "whale-firewall.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(hub_port: int, mirror_port: int | None = None, *, address: str | None = None,
            owner: str = "site", pid: int | None = None,
            extra_ports: dict[str, int] | None = None) -> None:
    """Apply the rules (idempotent), letting learners reach the hub's API port, the
    registry mirror's port and `extra_ports` (what -> port, e.g. {"whale-progress": 8082})
    (on `address` only, if given) for `owner`; other owners' ports stay. With `pid`, the
    owner's ports go when that process is gone."""
    if not _OWNER_NAME.fullmatch(owner):
        raise ValueError(f"owner must match {_OWNER_NAME.pattern}: {owner!r}")
    for what in extra_ports or {}:
        if not _OWNER_NAME.fullmatch(what):
            raise ValueError(f"a port's name must match {_OWNER_NAME.pattern}: {what!r}")
    if not _V4.binary or not _V4.restore:
        raise FirewallError("iptables is not installed (Debian package iptables)")
    if not _V4.has_chain("DOCKER-USER"):
        raise FirewallError("the DOCKER-USER chain is missing: is Docker's engine running "
                            "(with its iptables rules) on this machine? (or not root?)")
    dest = f"-d {address}/32 " if address else ""
    mine = []
    for what, port in (("hub-api", hub_port), ("registry-mirror", mirror_port),
                       *(extra_ports or {}).items()):
        if port:
            mine.append(f"{dest}-p tcp -m tcp --dport {int(port)} "
                        f"{_comment(f'{_OWNER_TAG} {owner} pid={pid or 0} {what}')} -j ACCEPT")
    with _locked():
        _V4.apply(_v4_chains(_kept_rules(owner) + mine), _V4_JUMPS)
        if _V6.usable():
            _V6.apply(_v6_chains(), _V6_JUMPS)


def remove(owner: str = "site") -> None:
    """Take away `owner`'s ports; when no owner is left, remove every rule and chain of
    this module (Docker's own rules are untouched). Idempotent."""
    if not _V4.binary:
        return
    with _locked():
        kept = _kept_rules(owner) if _V4.has_chain(INPUT_CHAIN) else []
        if kept:
            _V4.apply(_v4_chains(kept), _V4_JUMPS)
            return
        _V4.clear([INPUT_CHAIN, FORWARD_CHAIN], _V4_JUMPS)
        if _V6.usable():
            _V6.clear([INPUT_CHAIN, FORWARD_CHAIN], _V6_JUMPS)


def owners() -> dict[str, int | None]:
    """The owners whose ports are open now, with the pid they are bound to (or None)."""
    found = {}
    for line in _V4.rules(INPUT_CHAIN):
        owner = _owner_of(line)
        if owner:
            found[owner[0]] = owner[1]
    return found


def describe() -> str:
    """The module's rules as `iptables -S` prints them (for operators and test logs)."""
    out = []
    for family, jumps in ((_V4, _V4_JUMPS), (_V6, _V6_JUMPS)):
        if not family.binary or not family.has_chain(INPUT_CHAIN):
            continue
        out += [f"# {family.name}"]
        out += [f"-A {chain} {' '.join(spec)}" for chain, spec in jumps
                if family.has_rule(chain, spec)]
        out += family.rules(INPUT_CHAIN) + family.rules(FORWARD_CHAIN)
    return "\n".join(out)


__all__ = [
    "FORWARD_CHAIN",
    "INPUT_CHAIN",
    "LEARNER_INTERFACES",
    "FirewallError",
    "describe",
    "install",
    "owners",
    "remove",
]
