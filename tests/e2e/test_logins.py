"""Logins on a real edge node: lockout after repeated failures, and password checks off the event loop.

The burst of wrong logins comes from another process (50 asyncua clients whose sessions are created
first, then all activated at once), so that only the server shares this test's event loop with the
client whose Read latency is measured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest
from asyncua import ua

from sdk import audit
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import edge_settings, running_edge
from tests.processes import run_modelline
from tests.tls import CLIENT_APP_URI, Client, client_pki, issue, make_ca, secure

pytestmark = pytest.mark.e2e


def _users(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(
        'anonymous = "Observer"\n'
        f'[users.eng]\nrole = "Engineer"\npassword = "{hash_password("engineer-pw")}"\n'
        f'[users.op]\nrole = "Operator"\npassword = "{hash_password("operator-pw")}"\n'
    )
    return path


async def _login(url: str, user: str, password: str) -> tuple[str, float]:
    """How a login ended (a StatusCode name) and how long its ActivateSession took (the channel and the
    session are opened before the clock starts: on a loaded machine they take long, and vary)."""
    client = Client(url, timeout=20)
    await secure(client)
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    await client.create_session()
    start = time.monotonic()
    try:
        await client.activate_session(user, password)
        status = "Good"
    except ua.UaStatusCodeError as exc:
        status = type(exc).__name__
    took = time.monotonic() - start
    try:
        await client.disconnect()
    except Exception:  # a session never activated: the server may have closed it already
        client.disconnect_socket()
    return status, took


LOCKOUT_S = 8.0  # long enough for the two logins tried while locked out, on a loaded machine


@pytest.mark.timeout(120)
async def test_repeated_failures_lock_a_user_out_for_a_while(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = edge_settings(
        tmp_path,
        signer.trust_dir,
        users_file=_users(tmp_path),
        anonymous_role="Observer",
        login_max_failures=3,
        login_lockout_s=LOCKOUT_S,
        login_delay_s=0.1,
    )
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    caplog.set_level(logging.WARNING, logger="sdk.opcua.logins")
    try:
        async with running_edge(settings) as node:
            failures = [await _login(node.url, "eng", "wrong-password") for _ in range(3)]
            assert [status for status, _ in failures] == ["BadUserAccessDenied"] * 3
            # Each failure is answered later than the one before: 0.1 s, 0.2 s, 0.4 s.
            assert failures[0][1] >= 0.1 and failures[2][1] >= 0.4 and failures[2][1] > failures[0][1] + 0.2
            locked_at = time.monotonic()
            assert (await _login(node.url, "eng", "engineer-pw"))[0] == "BadUserAccessDenied"  # the right one
            assert (await _login(node.url, "op", "operator-pw"))[0] == "Good"  # another user is not locked out
            await asyncio.sleep(max(0.0, locked_at + LOCKOUT_S + 0.2 - time.monotonic()))
            assert (await _login(node.url, "eng", "engineer-pw"))[0] == "Good"
    finally:
        remove()
    refused = [r for r in records if (r.action, r.outcome, r.who) == ("login", "refused", "eng")]
    assert len(refused) == 4, refused
    assert all(r.address.startswith("127.0.0.1:") for r in refused)
    assert "locked out until" in refused[-1].detail
    assert [r.who for r in records if (r.action, r.outcome) == ("login", "ok")] == ["op", "eng"]
    logged = [r.getMessage() for r in caplog.records if "login refused" in r.getMessage()]
    assert len(logged) == 4 and all("from 127.0.0.1:" in m for m in logged), logged
    # A refusal is an answer, not an error of the server: no ERROR line from asyncua for it.
    assert not [r for r in caplog.records if r.name.startswith("asyncua") and r.levelno >= logging.ERROR]


BURST = """
import asyncio, json, sys
from pathlib import Path
from asyncua import Client, ua
from tests.tls import CLIENT_APP_URI, secure

async def ready(url, pki):
    client = Client(url, timeout=60)
    client.application_uri = CLIENT_APP_URI  # the test client's certificate, trusted by the node (tests/tls.py)
    await secure(client, pki_dir=pki)
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    await client.create_session()
    return client

async def activate(client):
    try:
        await client.activate_session("eng", "wrong-password")
    except ua.UaStatusCodeError as exc:
        return type(exc).__name__
    except Exception as exc:
        return repr(exc)
    return "Good"

async def main(url, count, pki):
    clients = [await ready(url, pki) for _ in range(count)]
    print("ready", flush=True)  # all sessions created: the ActivateSessions go out at once
    print(json.dumps(await asyncio.gather(*(activate(c) for c in clients))), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
"""


async def _read_latencies(
    client: Client, node: ua.NodeId, until: asyncio.Future[object] | None, count: int
) -> list[float]:
    latencies: list[float] = []
    while (until is None and len(latencies) < count) or (until is not None and not until.done()):
        start = time.monotonic()
        await client.read_values([client.get_node(node)])
        latencies.append(time.monotonic() - start)
        await asyncio.sleep(0.01)
    return latencies


@pytest.mark.timeout(180)
async def test_a_burst_of_wrong_logins_leaves_other_clients_reads_fast(tmp_path: Path, signer: Signer) -> None:
    settings = edge_settings(
        tmp_path,
        signer.trust_dir,
        users_file=_users(tmp_path),
        anonymous_role="Observer",
        login_max_failures=1000,  # every login is checked with scrypt: none is refused early
        login_max_failures_per_address=1000,
        login_delay_s=0.0,
    )
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        async with running_edge(settings) as node, Client(node.url, timeout=20) as reader:
            time_node = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)
            baseline = statistics.median(await _read_latencies(reader, time_node, None, 40))
            burst = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BURST, node.url, "50", str(client_pki()), stdout=asyncio.subprocess.PIPE
            )
            assert burst.stdout is not None
            assert (await asyncio.wait_for(burst.stdout.readline(), 60)).strip() == b"ready"
            done = asyncio.ensure_future(burst.communicate())
            during = await _read_latencies(reader, time_node, done, 0)
            out, _ = await done
    finally:
        remove()
    assert json.loads(out.decode().strip().splitlines()[-1]) == ["BadUserAccessDenied"] * 50
    assert len([r for r in records if (r.action, r.outcome) == ("login", "refused")]) == 50
    assert len(during) >= 5, during  # reads went on during the burst (a blocked loop answers only a few)
    p50 = statistics.median(during)
    assert p50 < 10 * baseline + 0.05, (baseline, p50, max(during))
    # The reads between login checks are fast either way; checks on the event loop (100 ms of scrypt
    # each) would hold one Read for all 50 in a row, seconds.
    assert max(during) < 20 * baseline + 0.5, (baseline, p50, sorted(during)[-5:])


@pytest.mark.timeout(180)
async def test_a_running_node_reads_its_changed_users_file_without_a_restart(
    tmp_path: Path, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    users = _users(tmp_path)
    settings = edge_settings(tmp_path, signer.trust_dir, users_file=users, anonymous_role="Observer")
    password_file = tmp_path / "new.pw"
    password_file.write_text("new-user-pw\n")
    caplog.set_level(logging.INFO, logger="sdk.opcua.users")
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    async with running_edge(settings) as node:
        assert (await _login(node.url, "newcomer", "new-user-pw"))[0] == "BadUserAccessDenied"
        code, _, err = await run_modelline(
            "users", "add", "--file", str(users), "--name", "newcomer", "--role", "Operator",
            "--password-file", str(password_file),
        )  # fmt: skip
        assert code == 0, err
        assert (await _login(node.url, "newcomer", "new-user-pw"))[0] == "Good"
        assert any("read again" in r.getMessage() for r in caplog.records if r.name == "sdk.opcua.users")
        async with Client(node.url) as session:  # a session open while the user is removed stays open
            code, _, err = await run_modelline("users", "remove", "--file", str(users), "--name", "eng")
            assert code == 0, err
            assert (await _login(node.url, "eng", "engineer-pw"))[0] == "BadUserAccessDenied"
            assert (await _login(node.url, "op", "operator-pw"))[0] == "Good"
            assert await session.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime).read_value()
        # A file broken by hand keeps the users read before (and says so), until it is fixed.
        users.write_text(users.read_text() + "\n[users.broken\n")
        assert (await _login(node.url, "op", "operator-pw"))[0] == "Good"
        assert any("not read again" in r.getMessage() for r in caplog.records)
    remove()
    # The node itself records what changed in the file, whoever changed it.
    changes = [(r.who, r.detail) for r in records if r.action == "user"]
    assert ("users file", "user 'newcomer' added (Operator)") in changes, changes
    assert ("users file", "user 'eng' removed") in changes, changes


async def _channel_for(client: Client, session_state: Path) -> Client:
    """``client`` on a new SecureChannel, holding the live session persisted in ``session_state`` (not activated)."""
    client.session_state_path = session_state
    await secure(client)
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    assert client._try_load_persisted_session()
    return client


@pytest.mark.timeout(180)
async def test_reactivating_a_live_session_on_a_new_channel_is_checked_off_the_loop_and_counted(
    tmp_path: Path, signer: Signer
) -> None:
    settings = edge_settings(
        tmp_path,
        signer.trust_dir,
        users_file=_users(tmp_path),
        anonymous_role="",
        login_max_failures=2,
        login_lockout_s=60.0,
        login_delay_s=0.1,
    )
    state = tmp_path / "session.json"
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        async with running_edge(settings) as node:
            first = Client(node.url)
            first.session_state_path = state
            first.set_user("eng")
            first.set_password("engineer-pw")
            await first.connect()
            await first.create_subscription(500, None)  # a session with a subscription outlives its channel
            first.disconnect_socket()  # the channel is lost, the session lives on (OPC 10000-4 6.7)

            again = await _channel_for(Client(node.url), state)
            try:
                await again.activate_session("eng", "engineer-pw")  # the right password: the session is back
                assert await again.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime).read_value()
                again._save_session_state()
            finally:
                again.disconnect_socket()
            for _ in range(2):  # wrong passwords on new channels: refused, audited, counted
                wrong = await _channel_for(Client(node.url), state)
                try:
                    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                        await wrong.activate_session("eng", "wrong-password")
                finally:
                    wrong.disconnect_socket()
            locked = await _channel_for(Client(node.url), state)
            try:  # locked out after two: even the right password is refused
                with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                    await locked.activate_session("eng", "engineer-pw")
            finally:
                locked.disconnect_socket()
    finally:
        remove()
    refused = [r for r in records if (r.action, r.outcome) == ("login", "refused") and r.who == "eng"]
    assert [r.detail for r in refused][:2] == ["wrong user name or password"] * 2
    assert "locked out" in refused[2].detail and all(r.address.startswith("127.0.0.1:") for r in refused)


@pytest.mark.timeout(180)
async def test_an_x509_identity_is_checked_against_the_trust_list_off_the_event_loop(
    tmp_path: Path, signer: Signer
) -> None:
    users_file = tmp_path / "users.toml"
    users_file.write_text(f'anonymous = ""\n[certificates]\n"{CLIENT_APP_URI}" = "Operator"\n')
    settings = edge_settings(tmp_path, signer.trust_dir, users_file=users_file)
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    async with running_edge(settings) as node:
        assert node.server is not None
        users = node.server.iserver.user_manager
        trusted, threads = users.certificate_trusted, []

        def watched(der: bytes) -> bool:
            threads.append(threading.current_thread())
            return bool(trusted(der))

        users.certificate_trusted = watched
        client = Client(node.url)
        await secure(client)
        await client.load_client_certificate(str(client_pki() / "own" / "cert.der"))
        await client.load_private_key(str(client_pki() / "own" / "key.pem"))
        async with client:
            assert await client.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime).read_value()
        assert threads and all(t is not threading.main_thread() for t in threads)
        # A certificate the node does not trust maps to nobody.
        stranger = tmp_path / "stranger"
        issue(stranger / "own", CLIENT_APP_URI, "stranger", issuer=make_ca("Other CA"))
        client = Client(node.url)
        await secure(client)
        await client.load_client_certificate(str(stranger / "own" / "cert.der"))
        await client.load_private_key(str(stranger / "own" / "key.pem"))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.connect()
        await client.disconnect()
        # Trusted (the test CA issued it) but given no role: refused too. Trust alone is no role.
        scada = tmp_path / "scada"
        issue(scada / "own", "urn:plant:scada", "SCADA")
        client = Client(node.url)
        client.application_uri = "urn:plant:scada"
        await secure(client, pki_dir=scada)
        await client.load_client_certificate(str(scada / "own" / "cert.der"))
        await client.load_private_key(str(scada / "own" / "key.pem"))
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.connect()
        await client.disconnect()
    remove()
    logins = [(r.outcome, r.who, r.detail) for r in records if r.action == "login"]
    assert ("ok", "certificate ModelLine CLI", "role Operator, certificate identity") in logins, logins
    assert ("refused", "certificate stranger", "certificate not in the trust list") in logins, logins
    assert ("refused", "certificate SCADA", "no role for this certificate") in logins, logins
