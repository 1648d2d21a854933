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
import time
from pathlib import Path

import pytest
from asyncua import ua

from sdk import audit
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.edge_harness import edge_settings, running_edge
from tests.tls import Client, client_pki

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
    """How a login ended (a StatusCode name) and how long it took."""
    client = Client(url, timeout=20)
    client.set_user(user)
    client.set_password(password)
    start = time.monotonic()
    try:
        await client.connect()
    except ua.UaStatusCodeError as exc:
        return type(exc).__name__, time.monotonic() - start
    await client.disconnect()
    return "Good", time.monotonic() - start


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
        login_lockout_s=3.0,
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
            await asyncio.sleep(max(0.0, locked_at + 3.2 - time.monotonic()))
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
