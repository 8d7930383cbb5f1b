"""Attacks on the kiosk's OPC UA server (issue 22, findings 2, 4 and 11),
each replayed with an independent client (Python asyncua, its lower layers
where the attack needs a request a normal client would not send), against
the kubevision-opcua example `line_server` (see test_opcua_line.py).

- finding 2: CreateSession without a certificate and never activated, to
  fill the server's sessions and lock the line's trusted HMI out;
- finding 11: the PKI folder's permissions, rejected/ growing without limit.

The caps and deadlines asserted here are opcua/src/gate.rs's and
opcua/src/auth.rs's constants; opcua/README.md ("Security") lists them."""

import asyncio
import os
import stat
import time

import pytest
from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from test_opcua_line import USER, PASSWORD, LineServer, client_with_certificate, run, secure_client, session_node

# gate.rs
MAX_SESSIONS, RESERVED_SESSIONS = 20, 8
ACTIVATION_TIMEOUT = 5.0


async def bare_session(server, source="127.0.0.1", activate=False):
    """Hello, a SecurityPolicy None channel and a CreateSession from
    `source` (any 127.x address on Linux loopback, to play another machine),
    without a certificate and, unless `activate`, never activated: a session
    no normal client would leave like that. Returns the client; raises if
    the server refuses or closes."""
    client = Client(server.url, timeout=5)
    uac = client.uaclient
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(
        loop.create_connection(uac._make_protocol, "127.0.0.1", server.port, local_addr=(source, 0)), 5
    )
    uac._set_state(UaClientState.SOCKET_OPEN)
    await client.send_hello()
    await client.open_secure_channel()
    params = ua.CreateSessionParameters()
    params.ClientDescription = ua.ApplicationDescription(
        ApplicationUri="urn:attacker", ApplicationType=ua.ApplicationType.Client
    )
    params.EndpointUrl = server.url
    params.SessionName = "attacker"
    params.ClientNonce = os.urandom(32)
    params.RequestedSessionTimeout = 3_600_000
    await uac.create_session(params)
    if activate:
        await uac.activate_session(ua.ActivateSessionParameters(UserIdentityToken=ua.AnonymousIdentityToken(PolicyId="anonymous")))
    return client


def close_quietly(clients):
    for c in clients:
        try:
            c.uaclient.disconnect_socket()
        except Exception:
            pass


async def read_as_trusted_hmi(server, tmp_path):
    """The line's HMI: Basic256Sha256 SignAndEncrypt with a certificate the
    kiosk trusts, anonymous user; reads SignedIn."""
    # secure_client trusts the certificate (as an administrator would) the
    # first time; the HMI itself connects anonymously.
    await secure_client(server, tmp_path, user=USER, password=PASSWORD)
    client = await client_with_certificate(server, tmp_path, SecurityPolicyBasic256Sha256)
    async with client:
        return await (await session_node(client, server.ns, "SignedIn")).read_value()


def test_certificate_less_sessions_cannot_lock_out_the_trusted_hmi(tmp_path):
    """Finding 2: twenty and more CreateSessions without a certificate, from
    several addresses, never activated. Before the fix they filled the
    server's 20 sessions and the trusted HMI got BadTooManySessions for a
    minute; now certificate-less clients hold MAX_SESSIONS - RESERVED_SESSIONS
    at most, and the HMI gets in while the attackers' sockets are open and
    after they closed them."""
    server = LineServer(tmp_path)  # --allow-none: the None endpoint is on
    try:

        async def attack():
            held, refused = [], 0
            for a in range(2, 8):  # 127.0.0.2 … 127.0.0.7, 5 each: 30 tries
                for _ in range(5):
                    try:
                        held.append(await bare_session(server, source=f"127.0.0.{a}"))
                    except Exception:
                        refused += 1
            try:
                assert len(held) <= MAX_SESSIONS - RESERVED_SESSIONS, f"{len(held)} certificate-less sessions"
                assert refused >= 30 - (MAX_SESSIONS - RESERVED_SESSIONS)
                # The sockets still open: the trusted HMI gets in.
                assert await read_as_trusted_hmi(server, tmp_path) is False
            finally:
                close_quietly(held)
            # And after they closed (the stack keeps unactivated sessions
            # until their timeout): still in.
            await asyncio.sleep(0.2)
            assert await read_as_trusted_hmi(server, tmp_path) is False

        run(attack())
    finally:
        server.stop()


def test_without_the_none_endpoint_no_session_without_a_certificate(tmp_path):
    """Finding 2: with the None endpoint off (the default), a None channel is
    for GetEndpoints only: a CreateSession on it is refused (before the fix
    the stack created the session and only refused its activation)."""
    server = LineServer(tmp_path, allow_none=False)
    try:

        async def check():
            # Discovery still works without a certificate.
            endpoints = await Client(server.url).connect_and_get_server_endpoints()
            assert endpoints
            for _ in range(2):
                with pytest.raises(Exception):
                    client = await bare_session(server)
                    close_quietly([client])
            # The trusted HMI is not affected.
            assert await read_as_trusted_hmi(server, tmp_path) is False

        run(check())
    finally:
        server.stop()


def test_an_unactivated_certificate_less_session_is_closed(tmp_path):
    """Finding 2: a session that is not activated within ACTIVATION_TIMEOUT
    loses its connection (before the fix it stayed for the session timeout,
    60 s); one that is activated in time stays."""
    server = LineServer(tmp_path)
    try:

        async def check():
            idle = await bare_session(server, source="127.0.0.2")
            prompt = await bare_session(server, source="127.0.0.3", activate=True)
            try:
                await asyncio.sleep(ACTIVATION_TIMEOUT + 1.5)
                with pytest.raises(Exception):
                    await idle.uaclient.activate_session(
                        ua.ActivateSessionParameters(UserIdentityToken=ua.AnonymousIdentityToken(PolicyId="anonymous"))
                    )
                # The activated one still reads.
                value = await prompt.uaclient.read(
                    ua.ReadParameters(
                        NodesToRead=[
                            ua.ReadValueId(
                                NodeId=ua.NodeId("KubeVision.Session.SignedIn", server.ns),
                                AttributeId=ua.AttributeIds.Value,
                            )
                        ]
                    )
                )
                assert value[0].Value.Value is False
            finally:
                close_quietly([idle, prompt])

        run(check())
    finally:
        server.stop()


def test_the_pki_folder_is_private_whatever_the_umask(tmp_path):
    """Finding 11: private.pem was 0644 and the folders 0755 (with the usual
    umask; worse under umask 000)."""
    server = LineServer(tmp_path, umask=0)
    try:
        key = server.pki / "private" / "private.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)
        for folder in [server.pki] + [server.pki / f for f in ["own", "private", "trusted", "rejected"]]:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder}: {oct(folder.stat().st_mode)}"
    finally:
        server.stop()


def test_rejected_certificates_are_capped_to_the_newest(tmp_path):
    """Finding 11: every unknown client certificate left a file in rejected/
    (200 certificates, 200 files). Now the newest `--max-rejected` stay."""
    keep = 3
    server = LineServer(tmp_path, args=["--max-rejected", str(keep)])
    try:

        async def attack():
            for i in range(8):
                client = Client(server.url, timeout=5)
                client.application_uri = f"urn:kubevision:stranger-{i}"
                cert, key = await client.setup_self_signed_certificate(
                    tmp_path / f"c{i}" / "key.pem", tmp_path / f"c{i}" / "cert.der", host_name="localhost"
                )
                await client.set_security(
                    SecurityPolicyBasic256Sha256, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt
                )
                with pytest.raises(Exception):
                    await client.connect()
                await client.disconnect()

        run(attack())
        deadline = time.monotonic() + 5
        while len(files := list((server.pki / "rejected").glob("*.der"))) > keep:
            assert time.monotonic() < deadline, f"{len(files)} files in rejected/"
            time.sleep(0.1)
        kept = {f.read_bytes() for f in files}
        assert (tmp_path / "c7" / "cert.der").read_bytes() in kept, "the newest certificate was deleted"
        assert (tmp_path / "c0" / "cert.der").read_bytes() not in kept
        # The kiosk's screen lists what is left.
        assert len(server.rejected()) == len(files)
    finally:
        server.stop()
