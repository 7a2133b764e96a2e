"""Made tests/tls/*.pem once (python3 tests/tls/make_certs.py tests/tls; it needs the
cryptography package, which the tests themselves do not).

ca.pem: a certificate authority of the tests' own. Each other file is a certificate
and its key, for 127.0.0.1 and localhost unless said: good.pem (signed by the CA,
valid to 2126), expired.pem (signed by the CA, valid in 2020 only), other-name.pem
(signed by the CA, for other.test only), self-signed.pem (signed by itself).
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.UTC
LONG = (datetime.datetime(2026, 1, 1, tzinfo=UTC), datetime.datetime(2126, 1, 1, tzinfo=UTC))
PAST = (datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2021, 1, 1, tzinfo=UTC))
HERE = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
Key = ec.EllipticCurvePrivateKey


def certificate(
    key: Key,
    name: str,
    issuer: tuple[x509.Certificate, Key] | None,
    span: tuple[datetime.datetime, datetime.datetime],
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(span[0])
        .not_valid_after(span[1])
        .add_extension(x509.BasicConstraints(ca=names is None, path_length=None), critical=True)
    )
    if names is None:  # the authority
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        server = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        builder = builder.add_extension(server, critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def main(folder: Path) -> None:
    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority = certificate(authority_key, "crawler tests CA", None, LONG)
    (folder / "ca.pem").write_bytes(authority.public_bytes(serialization.Encoding.PEM))
    signed = (authority, authority_key)
    for name, issuer, span, names in [
        ("good", signed, LONG, HERE),
        ("expired", signed, PAST, HERE),
        ("other-name", signed, LONG, [x509.DNSName("other.test")]),
        ("self-signed", None, LONG, HERE),
    ]:
        key = ec.generate_private_key(ec.SECP256R1())
        made = certificate(key, name, issuer, span, names)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (folder / f"{name}.pem").write_bytes(
            made.public_bytes(serialization.Encoding.PEM) + private
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
