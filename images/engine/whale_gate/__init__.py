"""whale-gate: the classroom policy of a learner's engine, as a gate in front of dockerd.

dockerd listens only on its unix socket inside the engine container. This gate listens on
TCP 2376 with mutual TLS (the client certificate must chain to the engine's CA), reads each
HTTP/1.1 request once, checks it against an allow-list, and forwards to dockerd only its
own canonical re-encoding of what it checked: a plain path, a re-encoded query, a fixed
set of headers and, for JSON bodies, the JSON it parsed (json.dumps of it). dockerd never
sees bytes the check did not, so the ways dockerd reads a request differently from a
checker (Go matches JSON keys without regard to case and folds Unicode; the last of
duplicate keys wins; paths may be percent-encoded; old API versions take settings in
other places) do not matter: every key must be one of Docker's own field names, spelled
exactly, and duplicates, encodings, unknown fields, endpoints and parameters are refused.

What is refused keeps a learner's containers inside their user namespace (dockerd runs
with --userns-remap): privileged containers and exec sessions, the engine's namespaces,
capabilities beyond Docker's defaults, devices, unconfined security profiles, bind mounts
of the engine's system paths, volumes that mount the engine's disks, engine plugins, log
drivers that send elsewhere, and so on. Each refusal is an HTTP 403 (413 for a body over
1 MiB) with {"message": "whale: <what> is not allowed on this classroom engine: <why>."},
which the docker CLI prints as "Error response from daemon: ...", and one line on stderr.

The decision is the pure function decide() (policy.py); the rest moves bytes. Build
contexts and image archives stream through; responses stream back as they come; attach
and exec sessions are pumped both ways, half-close included.

The modules: limits, decision (refusals), jsonbody and schema (bodies and Docker's
objects), mounts, containers, networks, swarm and query (the rules), routes (the
allow-list), policy (decide), framing, tls and server (moving bytes), dockerd (lookups),
and __main__ (the command whale-gate, which supervises dockerd).
"""
from .decision import Decision, Refused
from .framing import BadRequest, body_framing, parse_request_head
from .mounts import without_copy
from .policy import decide, wants_stream

__all__ = ["NETWORK_LOOKUP", "BadRequest", "Decision", "Refused", "body_framing", "decide",
           "parse_request_head", "wants_stream", "without_copy"]

# How a network named by ID or ID prefix is found: set by the running gate to a lookup on
# dockerd (name or ID -> the network's Name and Driver, or None when there is none). The
# rule tests leave it unset, and then only the name "host" is known to be the host's.
# It lives here, on the package, so that setting whale_gate.NETWORK_LOOKUP reaches the
# rules (networks.is_host_network reads it from here each time).
NETWORK_LOOKUP = None
