"""The PEM files of a bundle: read, matched and checked for dates (offline)."""
from __future__ import annotations

import datetime as _dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .errors import BundleError


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def aware(moment: _dt.datetime | None) -> _dt.datetime:
    if moment is None:
        return utcnow()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


def fingerprint(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _when(moment: _dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: _dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds >= 2 * 3600:
        return f"{int(seconds // 3600)} hours"
    if seconds >= 120:
        return f"{int(seconds // 60)} minutes"
    return "moments"


def public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certs(data: bytes, name: str, what: str) -> list[x509.Certificate]:
    if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data:
        raise BundleError("bad-pem", f"{name} holds a private key, not {what}. Were the "
                          "files renamed? Download the bundle again.", file=name)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise BundleError("bad-pem", f"{name} does not contain a readable PEM certificate "
                          f"({what} is expected). The file may be damaged: download the "
                          "bundle again.", file=name)
    return certs


def load_key(data: bytes):
    if b"PRIVATE KEY-----" not in data and b"CERTIFICATE-----" in data:
        raise BundleError("bad-pem", "key.pem holds a certificate, not a private key. Were "
                          "the files renamed? Download the bundle again.", file="key.pem")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BundleError("bad-pem", "key.pem is protected by a passphrase, and Docker "
                          "needs the key without one. Export it unencrypted (for example "
                          "with `openssl pkey -in key.pem -out key.pem`) and try again.",
                          file="key.pem") from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's own message is dropped on purpose: never echo key parsing details.
        raise BundleError("bad-pem", "key.pem does not contain a readable PEM private key. "
                          "The file may be damaged: download the bundle again.",
                          file="key.pem") from None


def issuer_of(cert: x509.Certificate, authorities: list[x509.Certificate]):
    for authority in authorities:
        try:
            cert.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return authority
    return None


def check_validity(cert: x509.Certificate, name: str, what: str, now: _dt.datetime):
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > end:
        raise BundleError("expired", f"The {what} ({name}) expired on {_when(end)}, "
                          f"{_span(now - end)} ago. Get a fresh credentials bundle and "
                          "install it.", file=name)
    if now < start:
        raise BundleError("not-yet-valid", f"The {what} ({name}) only becomes valid on "
                          f"{_when(start)}, {_span(start - now)} from now. Check that "
                          "this computer's clock is right, or wait until then.", file=name)
