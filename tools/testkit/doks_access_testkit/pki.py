"""Certificates and keys for a throw-away control plane.

Everything a kube-apiserver needs for TLS and client-certificate authentication is generated here in
memory, so a test run never depends on files from an earlier one. The client CA's key is kept on the
:class:`ControlPlanePKI` object: tests mint users with chosen groups and lifetimes from it, and the
DigitalOcean API emulator mints legacy client-certificate kubeconfigs the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Clocks of the processes on one machine agree, but a certificate valid from "now" can be judged
# a few milliseconds too early by the server; back-dating avoids that flake.
_BACKDATE = datetime.timedelta(minutes=1)
_CA_LIFETIME = datetime.timedelta(days=7)


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclasses.dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that can sign leaf certificates."""

    name: str
    pair: KeyPair

    @classmethod
    def create(cls, *, name: str, now: datetime.datetime) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(name=name, pair=_pair(cert, key))

    @property
    def cert_pem(self) -> bytes:
        return self.pair.cert_pem

    def issue_server(
        self, *, common_name: str, hosts: list[str], now: datetime.datetime
    ) -> KeyPair:
        """A TLS serving certificate valid for the given DNS names and IP addresses."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._issue(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            not_after=now + _CA_LIFETIME,
            now=now,
            extra=[x509.SubjectAlternativeName(names)],
        )

    def issue_client(
        self,
        *,
        user: str,
        groups: tuple[str, ...] = (),
        not_after: datetime.datetime,
        now: datetime.datetime,
    ) -> KeyPair:
        """A client certificate the apiserver maps to ``user`` (CN) in ``groups`` (O)."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        return self._issue(
            subject=x509.Name(attributes),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            not_after=not_after,
            now=now,
            extra=[],
        )

    def _issue(
        self,
        *,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        not_after: datetime.datetime,
        now: datetime.datetime,
        extra: list[x509.ExtensionType],
    ) -> KeyPair:
        ca_key = serialization.load_pem_private_key(self.pair.key_pem, password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the CA key must be an EC key")
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.pair.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return _pair(builder.sign(ca_key, hashes.SHA256()), key)


@dataclasses.dataclass(frozen=True)
class ControlPlanePKI:
    """All key material of one control plane."""

    serving_ca: CertificateAuthority
    client_ca: CertificateAuthority
    apiserver: KeyPair
    service_account_key_pem: bytes
    service_account_public_pem: bytes

    @classmethod
    def generate(cls, *, now: datetime.datetime, hosts: list[str]) -> ControlPlanePKI:
        serving_ca = CertificateAuthority.create(name="doks-access-test-serving-ca", now=now)
        client_ca = CertificateAuthority.create(name="doks-access-test-client-ca", now=now)
        # Kubernetes signs ServiceAccount tokens with RS256 by default; an RSA key keeps that path.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(
            serving_ca=serving_ca,
            client_ca=client_ca,
            apiserver=serving_ca.issue_server(common_name="kube-apiserver", hosts=hosts, now=now),
            service_account_key_pem=sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            service_account_public_pem=sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )


def _pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    return KeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
