"""The trust list over OPC UA, as far as asyncua allows: OPC 10000-12 7.8.2 TrustListType's AddCertificate
(7.8.2.6) and RemoveCertificate (7.8.2.7) on ``ServerConfiguration/CertificateGroups/DefaultApplicationGroup/
TrustList`` of the standard address space, for a SecurityAdmin over a SignAndEncrypt channel.

asyncua 2.1 has these nodes but no implementation of them, nor a push-model ServerConfiguration; the
TrustList file (Open, Read, CloseAndUpdate with a TrustListDataType) is not served: ``modelline trust``
on the machine manages the whole lists (sdk.opcua.pki)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from cryptography.hazmat.primitives import serialization

from sdk import audit
from sdk.opcua import pki, sessions
from sdk.opcua.methods import bind_method
from sdk.opcua.status import StatusError, status_on_error
from sdk.opcua.users import Role, requires

_TRUST_LIST = "ServerConfiguration_CertificateGroups_DefaultApplicationGroup_TrustList_"


def _encrypted() -> None:
    """OPC 10000-12 7.8.2.1: trust list changes only over an encrypted channel."""
    mode = getattr(sessions.current_session(), "security_mode", None)  # set by sdk.opcua.security
    if mode is not None and mode != ua.MessageSecurityMode.SignAndEncrypt:
        raise StatusError(ua.StatusCodes.BadSecurityModeInsufficient, "the trust list changes only over SignAndEncrypt")


async def serve(server: Server, pki_dir: Path) -> None:
    """Bind AddCertificate and RemoveCertificate of the server's default application group to ``pki_dir``."""

    @status_on_error
    @requires(Role.SECURITY_ADMIN)
    async def add_certificate(parent: ua.NodeId, certificate: ua.Variant, trusted: ua.Variant) -> list[Any]:
        _encrypted()
        try:
            cert = pki.load_certificate(bytes(certificate.Value or b""))
        except ValueError:
            raise StatusError(ua.StatusCodes.BadCertificateInvalid, "not a DER certificate") from None
        folder = pki_dir / ("trusted" if trusted.Value else "issuers") / "certs"
        if not trusted.Value and not pki.is_ca(cert):
            raise StatusError(ua.StatusCodes.BadCertificateInvalid, "only a CA certificate goes to the issuers list")

        def write() -> None:
            pki.ensure_layout(pki_dir)
            (folder / pki.file_name(cert)).write_bytes(cert.public_bytes(serialization.Encoding.DER))

        await asyncio.to_thread(write)
        audit.record(
            "trust",
            "ok",
            who=str(getattr(sessions.current_user(), "name", "") or ""),
            target=pki.common_name(cert),
            detail=f"AddCertificate {pki.thumbprint(cert)} into {folder.parent.name}/certs",
        )
        return []

    @status_on_error
    @requires(Role.SECURITY_ADMIN)
    async def remove_certificate(parent: ua.NodeId, thumbprint: ua.Variant, trusted: ua.Variant) -> list[Any]:
        _encrypted()
        wanted = str(thumbprint.Value or "").upper()
        listed = await asyncio.to_thread(pki.entries, pki_dir, "trusted" if trusted.Value else "issuers")
        found = [e for e in listed if e.thumbprint == wanted]
        if not found:
            raise StatusError(ua.StatusCodes.BadInvalidArgument, f"no certificate {wanted} in the list")
        await asyncio.to_thread(found[0].file.unlink)
        audit.record(
            "trust",
            "ok",
            who=str(getattr(sessions.current_user(), "name", "") or ""),
            target=found[0].subject,
            detail=f"RemoveCertificate {wanted} from {found[0].list}",
        )
        return []

    for name, handler in (("AddCertificate", add_certificate), ("RemoveCertificate", remove_certificate)):
        node = server.get_node(ua.NodeId(getattr(ua.ObjectIds, _TRUST_LIST + name)))
        await bind_method(server, node, handler)
