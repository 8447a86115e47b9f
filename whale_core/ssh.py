"""SSH endpoints: a learner's own engine reached as ``ssh://user@host[:port]``.

An SSH bundle holds ``docker.env`` (DOCKER_HOST=ssh://…), ``ssh_key`` (the private key,
without a passphrase) and ``known_hosts`` (the engine machine's host key). The Docker CLI
and the Docker SDK do the SSH themselves: both run ``ssh … docker system dial-stdio``.
What this module adds is *which* ssh: one that uses only the bundle's key and the
bundle's known_hosts, checks the host key strictly (an unknown or changed key is
refused, never learned) and never prompts. For the CLI that is the bundle's
``bin/ssh`` (first on the kernel's and the terminal's PATH); in a Python process it is
an SDK client whose SSH socket runs the same command.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from .errors import BundleError

#: The files of an SSH bundle besides docker.env.
SSH_FILES = ("ssh_key", "known_hosts")
#: Where write_bundle_dir puts the bundle's ssh, relative to the bundle.
SSH_WRAPPER = "bin/ssh"
DEFAULT_SSH_PORT = 22
CONNECT_TIMEOUT = 8
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def normalize_ssh_host(raw: str, source: str) -> str:
    """Check an ``ssh://user@host[:port]`` DOCKER_HOST; return it with the port."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port or DEFAULT_SSH_PORT
    except ValueError:
        parts = port = None
    if (parts is None or parts.password or parts.query or parts.fragment
            or parts.path not in ("", "/") or not parts.hostname
            or not _HOSTNAME.fullmatch(parts.hostname)):
        raise BundleError("bad-env", f"{source} sets DOCKER_HOST to an SSH address that is "
                          "not like ssh://me@203.0.113.7 or ssh://me@box.example:2222 "
                          "(a user, a host name or IPv4 address, an optional port).",
                          file="docker.env")
    if not parts.username or not _USER.fullmatch(parts.username):
        raise BundleError("bad-env", f"{source} sets an SSH DOCKER_HOST without a user "
                          "name to log in as (or with one ssh would take for an option): write it as "
                          "ssh://USER@HOST.", file="docker.env")
    return f"ssh://{parts.username}@{parts.hostname}:{port}"


def split_ssh_host(docker_host: str) -> tuple[str, str, int]:
    """(user, host, port) of a normalized ssh:// DOCKER_HOST."""
    parts = urlsplit(docker_host)
    return parts.username or "", parts.hostname or "", parts.port or DEFAULT_SSH_PORT


def check_private_key(data: bytes) -> str:
    """Check ``ssh_key``; return its public key's SHA256 fingerprint (as ssh prints it).

    Refused: a public key, a key with a passphrase (nothing could type it), or anything
    that is not an OpenSSH or PEM private key.
    """
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    if text.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        raise BundleError("bad-ssh-key", "ssh_key holds a public key (the .pub file). "
                          "Upload the private key: the file without .pub, e.g. "
                          "~/.ssh/id_ed25519.", file="ssh_key")
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in text:
            key = serialization.load_ssh_private_key(text, password=None)
        else:
            key = serialization.load_pem_private_key(text, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise BundleError("bad-ssh-key", "ssh_key is protected by a passphrase, and "
                          "nobody is there to type it. Make a key for the site without "
                          "one (`ssh-keygen -t ed25519 -N '' -f whale_key`) and add its .pub "
                          "to the engine machine's authorized_keys.", file="ssh_key") from None
    except (ValueError, AttributeError):
        raise BundleError("bad-ssh-key", "ssh_key is not a private key ssh can use (an "
                          "OpenSSH or PEM private key, e.g. ~/.ssh/id_ed25519).",
                          file="ssh_key") from None
    except Exception:  # unsupported key types raise cryptography's own errors
        raise BundleError("bad-ssh-key", "ssh_key is a kind of key this site cannot "
                          "read. Use an ed25519, ECDSA or RSA key.", file="ssh_key") from None
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).split()[1]
    del key
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest())
    return "SHA256:" + digest.decode().rstrip("=")


def host_keys_for(known_hosts: bytes, host: str, port: int) -> list[str]:
    """The SHA256 fingerprints of the keys known_hosts lists for host:port (hashed
    entries included); a known_hosts that is not one is refused."""
    try:
        text = known_hosts.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BundleError("bad-known-hosts", "known_hosts is not a text file. It should "
                          "hold lines like `[box.example]:2222 ssh-ed25519 AAAA…`, as "
                          "`ssh-keyscan` prints them.", file="known_hosts") from None
    names = {host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"}
    found, lines = [], 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("@"):  # @cert-authority / @revoked markers
            fields = fields[1:]
        if len(fields) < 3:
            raise BundleError("bad-known-hosts", "known_hosts has a line that is not "
                              "`HOST KEYTYPE KEY`. Make it with `ssh-keyscan -p PORT HOST`.",
                              file="known_hosts")
        lines += 1
        patterns, blob = fields[0], fields[2]
        if any(_host_matches(p, name) for p in patterns.split(",") for name in names):
            try:
                raw = base64.b64decode(blob, validate=True)
            except ValueError:
                continue
            found.append("SHA256:" + base64.b64encode(hashlib.sha256(raw).digest())
                         .decode().rstrip("="))
    if not lines:
        raise BundleError("bad-known-hosts", "known_hosts is empty. Add the engine "
                          "machine's host key: `ssh-keyscan -p PORT HOST > known_hosts`, "
                          "and compare it with what the machine's owner says it is.",
                          file="known_hosts")
    return found


def _host_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):  # HashKnownHosts: |1|salt|HMAC-SHA1(salt, name)
        try:
            salt, digest = (base64.b64decode(x) for x in pattern[3:].split("|", 1))
        except ValueError:
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    return pattern == name


def ssh_options(directory: Path | str) -> list[str]:
    """ssh options that use only the bundle in `directory`: its key, its known_hosts,
    a strict host-key check, no prompt, no agent, no user or system ssh config."""
    d = str(directory)
    return ["-F", "/dev/null",
            "-o", f'IdentityFile="{d}/ssh_key"', "-o", "IdentitiesOnly=yes",
            "-o", f'UserKnownHostsFile="{d}/known_hosts"',
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no",
            "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=15", "-o", "ForwardAgent=no",
            "-o", "ClearAllForwardings=yes", "-o", "LogLevel=ERROR"]


def wrapper_script() -> bytes:
    """``bin/ssh``: ssh with :func:`ssh_options` for the bundle this file is in,
    resolved once (a bundle swapped in meanwhile cannot mix two bundles' files)."""
    words = []
    for option in ssh_options("@DIR@"):
        if "@DIR@" in option:
            key, value = option.split("=", 1)
            words.append(f'"{key}=\\"{value.strip(chr(34)).replace("@DIR@", "$d")}\\""')
        else:
            words.append(f"'{option}'")
    return ("#!/bin/sh\n"
            "# Written by How to Whale: the ssh the Docker CLI runs for this bundle's engine.\n"
            'd=$(cd -P "$(dirname "$0")/.." && pwd) || exit 255\n'
            f"exec /usr/bin/ssh {' '.join(words)} \"$@\"\n").encode()


def ssh_binary() -> str:
    """The real ssh (never a bundle's bin/ssh, which may come first on PATH)."""
    return "/usr/bin/ssh" if os.path.exists("/usr/bin/ssh") else "ssh"


def ssh_command(directory: Path | str, user: str, host: str, port: int, *remote: str) -> list[str]:
    return [ssh_binary(), *ssh_options(directory), "-l", user, "-p", str(port), "--", host, *remote]


def diagnose(directory: Path | str, docker_host: str, timeout: float) -> str:
    """Why the engine behind an SSH endpoint does not answer, in one plain line."""
    user, host, port = split_ssh_host(docker_host)
    try:
        done = subprocess.run(ssh_command(directory, user, host, port, "docker", "version",
                                          "--format", "{{.Server.Version}}"),
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout + CONNECT_TIMEOUT)
    except FileNotFoundError:
        return "this machine has no ssh client (install openssh-client)"
    except subprocess.TimeoutExpired:
        return f"{host}:{port} did not answer over SSH within {timeout + CONNECT_TIMEOUT:g} s"
    err = done.stderr.decode(errors="replace")
    if done.returncode == 0:
        return "the engine answered a second try (it may have been starting)"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
        return (f"the SSH server at {host}:{port} is not the machine known_hosts names "
                "(its host key differs), so it was refused. If the machine was reinstalled, "
                "scan its key again; if not, someone may be in the way")
    if "Host key verification failed" in err:
        return (f"the SSH server at {host}:{port} offered a kind of host key that "
                "known_hosts does not list for it, so it was refused. Scan all its keys "
                f"(`ssh-keyscan -p {port} {host}`) and check them with the machine's owner")
    if "Permission denied" in err:
        return (f"the SSH server at {host}:{port} refused the key for user {user} (add the "
                "key's .pub to that user's ~/.ssh/authorized_keys)")
    if "Connection refused" in err:
        return f"nothing listens for SSH at {host}:{port} (connection refused)"
    if "timed out" in err:
        return f"{host}:{port} did not answer over SSH (connection timed out)"
    if "Could not resolve hostname" in err:
        return f"the host name {host} is not known (check the address)"
    if "Cannot connect to the Docker daemon" in err or "docker.sock" in err:
        return (f"SSH to {host} works, but no Docker engine answers there (is dockerd "
                "running, and is the user in the docker group?)")
    if "command not found" in err or "docker: not found" in err:
        return f"SSH to {host} works, but it has no docker command (install the Docker CLI there)"
    last = [line for line in err.splitlines() if line.strip()]
    return (last[-1].strip() if last else f"ssh ended with status {done.returncode}")[:300]


def docker_client(directory: Path | str, docker_host: str, timeout: float, version: str):
    """A ``docker.DockerClient`` for an SSH endpoint through the Docker SDK's own SSH
    transport (``use_ssh_client``: it runs ``ssh … docker system dial-stdio``), with
    the ssh of :func:`ssh_options`. The SDK's socket runs plain ``ssh`` from PATH, with
    the user's config and known_hosts; this one differs only in the command."""
    import docker
    from docker.transport import sshconn

    options = ssh_options(directory)

    class Socket(sshconn.SSHSocket):
        def connect(self, **kwargs):
            args = [ssh_binary(), *options]
            if self.user:
                args += ["-l", self.user]
            if self.port:
                args += ["-p", self.port]
            self.proc = subprocess.Popen([*args, "--", self.host, "docker system dial-stdio"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, preexec_fn=_ignore_sigint)

        def close(self):
            # The SDK's close leaves the ssh running and this (unused) socket open.
            proc, self.proc = self.proc, None
            if proc is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.close()
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                with contextlib.suppress(OSError, ValueError):
                    proc.stdout.close()
            socket.socket.close(self)

    class Connection(sshconn.SSHConnection):
        def connect(self):
            sock = Socket(self.ssh_host)
            sock.settimeout(self.timeout)
            sock.connect()
            self.sock = sock

    class Pool(sshconn.SSHConnectionPool):
        def _new_conn(self):
            return Connection(None, self.timeout, self.ssh_host)

        def _put_conn(self, conn):
            # A response closes the ssh's stdout once read, so a connection serves one
            # request (as in the SDK), and is closed here rather than left to the GC.
            if conn is not None:
                conn.close()

    class Adapter(sshconn.SSHHTTPAdapter):
        _pool = None

        def get_connection(self, url, proxies=None):
            if self._pool is None:
                self._pool = Pool(timeout=self.timeout, maxsize=self.max_pool_size,
                                  host=self.ssh_host)
            return self._pool

        def close(self):
            if self._pool is not None:
                self._pool.close()
            super().close()

    class Client(docker.DockerClient):
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.close()

    client = Client(base_url=docker_host, use_ssh_client=True, timeout=timeout,
                                 version=version if version != "auto" else "1.41")
    api = client.api
    api._custom_adapter = Adapter(docker_host, timeout=timeout, shell_out=True)
    api.mount("http+docker://ssh", api._custom_adapter)
    if version == "auto":
        api._version = api._retrieve_server_version()
    return client


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
