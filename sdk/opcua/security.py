"""A ModelLine server's secure endpoints, trust checks and the rules of its unencrypted endpoint.

- Endpoints (OPC 10000-4 7.14, OPC 10000-7 profiles): Basic256Sha256, Aes128_Sha256_RsaOaep and
  Aes256_Sha256_RsaPss, each with Sign and SignAndEncrypt. SecurityPolicy None only when the operator
  allows it (``allow_insecure``), and then read-only: a session on it may read, browse and subscribe;
  Call, Write, HistoryUpdate and NodeManagement are refused with Bad_SecurityModeInsufficient.
- Client application certificates are checked against the trust lists (sdk.opcua.pki) at
  CreateSession (OPC 10000-4 5.6.2): unknown ones are refused with Bad_CertificateUntrusted and kept in
  ``rejected/``; expired, wrong-URI and revoked ones with their Bad_Certificate* status.
- A password always travels encrypted (OPC 10000-4 7.41.4 UserNameIdentityToken): every endpoint's
  UserName token policy names an encrypting SecurityPolicy, and a token without EncryptionAlgorithm
  is refused with Bad_IdentityTokenInvalid, whatever the channel.
- An X509 user identity (OPC 10000-4 7.41.5) is passed to the user manager marked as such
  (``UserCertificate``), so that only a certificate in the trust list maps to a role.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from asyncua.crypto.permission_rules import PermissionRuleset
from cryptography import x509

from sdk import audit
from sdk.opcua import certificate, logins, pki, trust_list
from sdk.opcua.renewal import record_renewal
from sdk.opcua.users import UserCertificate, UserStore

_log = logging.getLogger(__name__)
_peer: ContextVar[str] = ContextVar("modelline_opcua_peer", default="")
_unsecured: ContextVar[bool] = ContextVar("modelline_opcua_unsecured", default=False)

SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]

# The requests a session on the unencrypted endpoint may not make: everything that changes the server.
_CHANGING_REQUESTS = {
    ua.NodeId(ua.Int32(request))
    for request in (
        ua.ObjectIds.CallRequest_Encoding_DefaultBinary,
        ua.ObjectIds.WriteRequest_Encoding_DefaultBinary,
        ua.ObjectIds.HistoryUpdateRequest_Encoding_DefaultBinary,
        ua.ObjectIds.AddNodesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.DeleteNodesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.AddReferencesRequest_Encoding_DefaultBinary,
        ua.ObjectIds.DeleteReferencesRequest_Encoding_DefaultBinary,
    )
}


class ReadOnlyChannel(PermissionRuleset):
    """The rules of a SecurityPolicy None channel: the server's own rules, and nothing that changes anything."""

    def __init__(self, base: PermissionRuleset | None) -> None:
        self._base = base

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        """Refuse what changes the server (Bad_SecurityModeInsufficient); the rest as the server's own rules say."""
        if action_type_id in _CHANGING_REQUESTS:  # answered with a ServiceFault of this status
            raise ServiceError(ua.StatusCodes.BadSecurityModeInsufficient)
        return self._base is None or bool(self._base.check_validity(user, action_type_id, body))  # type: ignore[no-untyped-call]


async def secure(
    server: Server, users: UserStore, pki_dir: Path, application_uri: str, name: str, allow_insecure: bool
) -> None:
    """Give ``server`` its certificate, trust lists and secure endpoints (see the module docstring)."""
    await asyncio.to_thread(pki.ensure_layout, pki_dir)
    own = await asyncio.to_thread(certificate.ensure, pki_dir / "own", application_uri, socket.gethostname(), name)
    if own.renewed and own.replaced is not None:
        record_renewal(application_uri, f"at start: {own.renewed}", own.replaced, own.certificate)
    await server.load_certificate(str(own.cert_file))
    await server.load_private_key(str(own.key_file))
    policies = list(SECURE_POLICIES)
    if allow_insecure:
        policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        _log.warning("%s: the unencrypted endpoint (SecurityPolicy None) is on, for reading only", name)
    server.set_security_policy(policies)

    async def validate(cert: x509.Certificate, client: ua.ApplicationDescription) -> None:
        if _unsecured.get():
            return  # OPC 10000-4 5.6.2: on a SecurityPolicy None channel the client certificate is ignored
        try:
            await pki.check_peer(pki_dir, cert, client.ApplicationUri, _peer.get())
        except pki.CertificateRefused as refused:
            _log.warning("client certificate %s refused: %s", pki.common_name(cert), refused.reason)
            raise ServiceError(refused.status) from None

    server.set_certificate_validator(validate)  # called at CreateSession with the client's certificate
    await asyncio.to_thread(pki.changes, pki_dir)  # the lists at start: later changes are audited (check_peer)
    users.certificate_trusted = lambda der: pki.is_trusted(pki_dir, x509.load_der_x509_certificate(der))
    _guard_tokens(server)
    _guard_sessions(server, allow_insecure)
    _encrypted_passwords(server)
    await trust_list.serve(server, pki_dir)


def _guard_tokens(server: Server) -> None:
    iserver = server.iserver
    decrypt, verify = iserver.decrypt_user_token, iserver.verify_x509_token

    def decrypt_user_token(isession: Any, token: ua.UserNameIdentityToken) -> tuple[str, str]:
        if not token.EncryptionAlgorithm:
            address = logins.client_address()
            _log.warning("login of user %r from %s refused: the password came unencrypted", token.UserName, address)
            who = str(token.UserName or "?")
            audit.record("login", "refused", who=who, address=address, detail="password sent unencrypted")
            raise ServiceError(ua.StatusCodes.BadIdentityTokenInvalid)
        return decrypt(isession, token)

    def verify_x509_token(isession: Any, token: ua.X509IdentityToken, signature: ua.SignatureData) -> bytes:
        return UserCertificate(verify(isession, token, signature))

    iserver.decrypt_user_token = decrypt_user_token  # type: ignore[method-assign]
    iserver.verify_x509_token = verify_x509_token  # type: ignore[method-assign]


def _guard_sessions(server: Server, allow_insecure: bool) -> None:
    """A session on a SecurityPolicy None channel: refused unless ``allow_insecure``, else read-only.

    asyncua lets any client open a None channel (it must, for GetEndpoints, OPC 10000-4 5.4.4) and then
    create a session on it even when no None endpoint is offered; the session's channel is found here
    through the connection that asks (asyncua names a session by its peer address)."""
    iserver = server.iserver
    create = iserver.create_session

    def create_session(name: Any, user: Any = None, external: bool = False) -> Any:
        if external:
            # The same task then runs CreateSession and its certificate check: it reads the peer from here.
            _peer.set(f"{name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else str(name))
            policy = _channel_policy(server, name)
            _unsecured.set(policy is not None and policy.URI == security_policies.SecurityPolicyNone.URI)
            if policy is None or policy.URI == security_policies.SecurityPolicyNone.URI:
                if not allow_insecure or policy is None:
                    _log.warning("session from %s refused: SecurityPolicy None is off", name)
                    raise ServiceError(ua.StatusCodes.BadSecurityPolicyRejected)
                if not isinstance(policy.permissions, ReadOnlyChannel):
                    policy.permissions = ReadOnlyChannel(policy.permissions or server._permission_ruleset)
            mode = ua.MessageSecurityMode(policy.Mode).name
            _log.info("session from %s over %s %s", name, policy.URI.rsplit("#", 1)[-1], mode)
        session = create(name, external=external) if user is None else create(name, user=user, external=external)
        if external and policy is not None:
            session.security_mode = ua.MessageSecurityMode(policy.Mode)  # type: ignore[attr-defined]  # for trust_list
        return session

    iserver.create_session = create_session  # type: ignore[method-assign]


def _channel_policy(server: Server, peer: Any) -> Any:
    bserver = server.bserver
    for protocol in list(bserver.clients) if bserver is not None else []:
        processor = protocol.processor
        if processor is not None and processor.name == peer:
            return processor._connection.security_policy
    return None


def _encrypted_passwords(server: Server) -> None:
    """Wrap the server's endpoint set-up (run at start): every UserName token policy names an encrypting
    SecurityPolicy (asyncua leaves it None on SignAndEncrypt endpoints, where a client would then send
    the password without EncryptionAlgorithm, which ``_guard_tokens`` refuses)."""
    setup = server._setup_server_nodes  # runs once, at start, after the endpoints are known

    async def setup_server_nodes() -> None:
        await setup()
        for endpoint in server.iserver.endpoints:
            if endpoint.SecurityMode == ua.MessageSecurityMode.None_:
                # Anonymous only: a password or a certificate identity needs a channel that proves the server
                # (else a machine in the middle learns them) and lets the server know its client (else a
                # stranger could lock a user out by guessing); the session is read-only there anyway.
                endpoint.UserIdentityTokens = [
                    t for t in endpoint.UserIdentityTokens if t.TokenType == ua.UserTokenType.Anonymous
                ]
                continue
            for token in endpoint.UserIdentityTokens:
                if token.TokenType == ua.UserTokenType.UserName:
                    token.SecurityPolicyUri = endpoint.SecurityPolicyUri

    server._setup_server_nodes = setup_server_nodes  # type: ignore[method-assign]


def channel_security(server: Server) -> list[tuple[str, str, ua.MessageSecurityMode]]:
    """For each open connection with a session: the session's name, its SecurityPolicy URI and mode
    (what a client really negotiated, as the server sees it; asyncua keeps no public list)."""
    found = []
    bserver = server.bserver
    for protocol in list(bserver.clients) if bserver is not None else []:
        processor = protocol.processor
        if processor is None or processor.session is None:
            continue
        policy = processor._connection.security_policy
        found.append((str(processor.session.name), str(policy.URI), ua.MessageSecurityMode(policy.Mode)))
    return found
