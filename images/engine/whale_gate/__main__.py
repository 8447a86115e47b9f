"""whale-gate: the classroom policy of a learner's engine, as a gate in front of dockerd.

    whale-gate [--tls-dir DIR] [--listen HOST:PORT] [--socket PATH] [-- dockerd ARGS...]

With a command after "--", the gate starts it (dockerd) and supervises it: the gate exits
when dockerd does, forwards SIGTERM/SIGINT to it, and stops dockerd if the gate fails.
As PID 1 it also reaps orphans.
"""
import argparse
import asyncio
import os
import signal
import subprocess
import sys

from .dockerd import lookup_network
from .server import Gate, log
from .tls import tls_context


async def run(args) -> int:
    loop = asyncio.get_running_loop()
    gate = Gate(args.socket, tls_context(args.tls_dir))
    # The rules look networks named by ID up on dockerd (NETWORK_LOOKUP, in __init__.py).
    sys.modules[__package__].NETWORK_LOOKUP = lambda ref: lookup_network(args.socket, ref)
    host, _, port = args.listen.rpartition(":")
    # --listen :2376 means every interface of the engine container, like the default.
    server = asyncio.create_task(gate.serve(host.strip("[]") or "0.0.0.0", int(port)))  # noqa: S104
    if not args.command:
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(0))
        done, _ = await asyncio.wait({server, stop}, return_when=asyncio.FIRST_COMPLETED)
        if server in done:
            server.result()
        return 0
    child = subprocess.Popen(args.command)
    exited = loop.create_future()

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == child.pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                if not exited.done():
                    exited.set_result(child.returncode)

    loop.add_signal_handler(signal.SIGCHLD, reap)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: child.returncode is None and child.send_signal(s))
    reap()
    done, _ = await asyncio.wait({server, exited}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        exc = server.exception()
        log(f"the gate stopped ({type(exc).__name__}: {exc}); stopping dockerd")
        if child.returncode is None:
            child.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(exited), 20)
            except asyncio.TimeoutError:
                child.kill()
        return 1
    code = exited.result()
    log(f"dockerd exited ({code})")
    server.cancel()
    return code if code > 0 else (1 if code else 0)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="whale-gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("tls_dir_arg", nargs="?", help="the TLS directory (ca.pem, server-cert.pem, "
                        "server-key.pem); default $WHALE_TLS_DIR or /etc/whale/tls")
    parser.add_argument("--tls-dir", default=None)
    parser.add_argument("--listen", default="0.0.0.0:2376")
    parser.add_argument("--socket", default="/var/run/docker.sock")
    args = parser.parse_args(argv)
    args.tls_dir = args.tls_dir or args.tls_dir_arg or os.environ.get("WHALE_TLS_DIR") or "/etc/whale/tls"
    args.command = command
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
