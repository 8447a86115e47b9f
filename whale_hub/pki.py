"""A small certificate authority for Docker engines that only speak TLS.

Each learner's engine gets its own CA, a server certificate for the addresses the
engine is reached on, and a client certificate that goes into the learner's
credentials bundle. Keys are EC P-256: fast to make (a sandbox is provisioned per
learner, so RSA key generation would be on the spawn path) and accepted by Docker.
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from whale_core.bundle import write_bundle_dir
from whale_core.envfile import format_env

_ONE_DAY = _dt.timedelta(days=1)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    """PEM (PKCS#8, unencrypted) for a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM for a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_pem(self.key)


class CertificateAuthority(Issued):
    """A self-signed CA that issues server and client certificates for one engine."""

    @classmethod
    def create(cls, name: str = "How to Whale engine CA", days: int = 365,
               not_before: _dt.datetime | None = None) -> CertificateAuthority:
        key = new_key()
        start = not_before or (_now() - _ONE_DAY)
        # A common name has at most 64 characters (RFC 5280): "How to Whale CA for" and
        # the longest engine name are more.
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key)

    def _issue(self, common_name: str, usage, sans=None, days: int = 365,
               not_before: _dt.datetime | None = None, key=None) -> Issued:
        key = key or new_key()
        start = not_before or (_now() - _ONE_DAY)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Issued(cert=builder.sign(self.key, hashes.SHA256()), key=key)

    def issue_server(self, hostnames=("localhost",), ips=("127.0.0.1",), **kw) -> Issued:
        """A server certificate whose SANs cover every name and address the engine is reached on."""
        sans = [x509.DNSName(h) for h in hostnames]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        return self._issue(hostnames[0] if hostnames else str(ips[0]),
                           ExtendedKeyUsageOID.SERVER_AUTH, sans, **kw)

    def issue_client(self, common_name: str = "learner", **kw) -> Issued:
        """A client certificate: what goes into a learner's credentials bundle."""
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, **kw)

    def save(self, directory: Path) -> None:
        """Keep the CA (its key 0600, in a 0700 directory) to issue more later: the
        certificates of nodes added to an engine's Swarm."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(directory / CA_KEY, self.key_pem)
        (directory / CA_CERT).write_bytes(self.cert_pem)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority | None:
        """A CA kept by save(); None if there is none (or only part of one)."""
        try:
            key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
            cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return cls(cert=cert, key=key)


CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (keys must never be group/world readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def write_engine_tls(server_dir: Path, ca: CertificateAuthority, server: Issued) -> None:
    """Lay out the files dockerd's --tlscacert/--tlscert/--tlskey options read."""
    server_dir.mkdir(parents=True, exist_ok=True)
    (server_dir / "ca.pem").write_bytes(ca.cert_pem)
    (server_dir / "server-cert.pem").write_bytes(server.cert_pem)
    write_private(server_dir / "server-key.pem", server.key_pem)


def write_client_bundle(bundle_dir: Path, ca: CertificateAuthority, client: Issued,
                        docker_host: str) -> Path:
    """Write a Carina-layout credentials bundle (ca.pem, cert.pem, key.pem, docker.env)
    into a new directory `bundle_dir`."""
    return write_bundle_dir(bundle_dir, {
        "ca.pem": ca.cert_pem, "cert.pem": client.cert_pem, "key.pem": client.key_pem,
        "docker.env": format_env({"DOCKER_HOST": docker_host, "DOCKER_TLS_VERIFY": "1",
                                  "DOCKER_CERT_PATH": str(bundle_dir)}),
    })
