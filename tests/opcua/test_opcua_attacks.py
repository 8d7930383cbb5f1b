"""Attacks on the kiosk's OPC UA server (issue 22, findings 2, 4 and 11),
each replayed with an independent client (Python asyncua, its lower layers
where the attack needs a request a normal client would not send), against
the kubevision-opcua example `line_server` (see test_opcua_line.py).

- finding 2: CreateSession without a certificate and never activated, to
  fill the server's sessions and lock the line's trusted HMI out;
- finding 4: a burst of concurrent wrong `SignOut()` passwords, to take the
  kiosk's memory, and guessing on until the right one is accepted;
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

# auth.rs
FREE_FAILURES, FIRST_BACKOFF = 3, 5.0

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


def reset_peak(pid):
    """Starts VmHWM again from the current resident set (Linux clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def memory_kib(pid):
    """VmRSS and VmHWM (the peak resident set since reset_peak) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def sign_out_attempt(server, tmp_path, password):
    """Activates a session as USER with `password` on a trusted SignAndEncrypt
    channel, as a client that wants to call SignOut() must. Returns None when
    the session was accepted, else the status code of the refusal."""
    client = await secure_client(server, tmp_path, user=USER, password=password)
    return await attempt(client)


async def attempt(client):
    """Connects `client` (activating its session) and disconnects again:
    None when the session was accepted, else the refusal's status code."""
    try:
        await client.connect()
    except ua.UaStatusCodeError as e:
        # asyncua has closed the channel itself.
        client.uaclient.disconnect_socket()
        return e.code
    await client.disconnect()
    return None


def from_address(client, source):
    """Makes `client` connect from `source` (a 127.x address: another
    machine, as far as the gate's per-address cap is concerned)."""
    uac = client.uaclient

    async def connect_socket(host, port):
        uac._set_state(UaClientState.CONNECTING)
        await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(uac._make_protocol, host, port, local_addr=(source, 0)),
            uac._timeout,
        )
        uac._set_state(UaClientState.SOCKET_OPEN)

    uac.connect_socket = connect_socket
    return client


def refusals(server, n):
    """The next `n` PASSWORD_REFUSED lines of the server (the kiosk's audit
    input), as (user, reason) pairs."""
    out = []
    for _ in range(n):
        fields = dict(kv.split("=", 1) for kv in server.expect("PASSWORD_REFUSED").split()[1:])
        assert fields["unreported_before"] == "0", fields
        out.append((fields["user"], fields["reason"]))
    return out


def stats(server):
    server.send("stats")
    fields = dict(kv.split("=", 1) for kv in server.expect("STATS").split()[1:])
    return int(fields["verifications"]), int(fields["max_concurrent"])


# What one Argon2id verification of line_server's hashes takes (the argon2
# crate's default, m = 19 456 KiB, as the kiosk's own 19 MiB), and the bounds
# on the server's growth over the burst:
# - at its peak, less than two verifications' memory: one at a time takes it
#   once, the 16 channels and refused sessions little beside; 16 at once, as
#   before the fix, would take 16 × 19 MiB = 304 MiB;
# - once over, less than half of one: no verification's buffer may stay
#   resident (before auth.rs handed freed memory back, each wrong password
#   left its 19 MiB: 4 of them, +77 MiB, kept).
ARGON2_KIB = 19_456
PEAK_GROWTH_KIB = 2 * ARGON2_KIB
KEPT_GROWTH_KIB = ARGON2_KIB // 2


def test_concurrent_wrong_sign_out_passwords_take_bounded_memory_lock_and_are_audited(tmp_path):
    """Finding 4: 16 concurrent wrong SignOut() passwords took the kiosk from
    300 MiB to 2.5 GiB resident (1.5 GiB stayed), and 175 guesses in 32 s
    were followed by the right password being accepted.

    Now, over real SignAndEncrypt channels with a trusted certificate and a
    user name: the server verifies one at a time (the example counts the
    most verifications at once: 1), its resident memory grows by less than
    PEAK_GROWTH_KIB at its peak and keeps less than KEPT_GROWTH_KIB; once more than FREE_FAILURES wrong
    passwords came in a row, the rest are refused unchecked and so is the
    right password, until FIRST_BACKOFF has passed; then the right one is
    accepted, and FREE_FAILURES wrong ones in a row lock nothing. Every
    refusal reaches the owner (the kiosk's audit trail) with the user name
    and its reason."""
    server = LineServer(tmp_path)
    try:
        pid = server.process.pid

        async def attack():
            # A right password first: the certificate trusted, the stack's
            # and one verification's memory taken, the count cleared.
            assert await sign_out_attempt(server, tmp_path, PASSWORD) is None
            await asyncio.sleep(0.5)
            reset_peak(pid)
            rss_before, _ = memory_kib(pid)
            verified_before, _ = stats(server)

            # From 4 addresses, 4 each: the gate lets 8 connections in per address.
            clients = [
                from_address(await secure_client(server, tmp_path, user=USER, password=f"guess-{i}"), f"127.0.0.{2 + i % 4}")
                for i in range(16)
            ]

            codes = await asyncio.gather(*(attempt(c) for c in clients))
            burst_end = time.monotonic()
            rss_after, hwm_after = memory_kib(pid)
            # (line_server's lines in order: the refusals before the stats.)
            reported = refusals(server, 16)
            verified, max_concurrent = stats(server)
            return rss_before, rss_after, hwm_after, codes, verified - verified_before, max_concurrent, reported, burst_end

        rss_before, rss_after, hwm_after, codes, verified, max_concurrent, reported, burst_end = run(attack())
        reasons = [r for _, r in reported]
        print(
            f"\nburst of 16: RSS {rss_before} KiB before, {rss_after} KiB after, peak {hwm_after} KiB "
            f"(+{hwm_after - rss_before} KiB); {verified} verified, most at once {max_concurrent}; "
            f"refused: {reasons.count('wrong_password')} wrong, {reasons.count('locked')} locked unchecked, "
            f"{reasons.count('busy')} busy"
        )
        refused = {ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadTooManyOperations}
        assert all(c in refused for c in codes), codes
        assert max_concurrent == 1, f"{max_concurrent} verifications at once"
        # The lock stops the checking: FREE_FAILURES + 1 verified at most.
        assert verified <= FREE_FAILURES + 1, f"{verified} passwords verified"
        assert reasons.count("wrong_password") == verified
        assert reasons.count("locked") >= 16 - (FREE_FAILURES + 1) - reasons.count("busy")
        assert reasons.count("locked") > 0
        assert all(user == USER for user, _ in reported), reported
        assert hwm_after - rss_before < PEAK_GROWTH_KIB, f"peak grew by {hwm_after - rss_before} KiB"
        assert rss_after - rss_before < KEPT_GROWTH_KIB, f"resident grew by {rss_after - rss_before} KiB"

        async def lockout():
            # Locked: the right password too, refused without a check.
            verified_before, _ = stats(server)
            assert await sign_out_attempt(server, tmp_path, PASSWORD) == ua.StatusCodes.BadUserAccessDenied
            assert refusals(server, 1) == [(USER, "locked")]
            assert stats(server)[0] == verified_before, "a locked attempt was verified"
            # After the backoff, the right one is accepted and may sign out.
            await asyncio.sleep(max(0.0, burst_end + FIRST_BACKOFF + 0.5 - time.monotonic()))
            client = await secure_client(server, tmp_path, user=USER, password=PASSWORD)
            async with client:
                session = client.get_node(ua.NodeId("KubeVision.Session", server.ns))
                await session.call_method(ua.NodeId("KubeVision.Session.SignOut", server.ns))
                assert server.expect("SIGN_OUT_REQUESTED") == f"SIGN_OUT_REQUESTED user={USER}"
            # That cleared the count: FREE_FAILURES wrong ones lock nothing.
            for i in range(FREE_FAILURES):
                assert await sign_out_attempt(server, tmp_path, f"again-{i}") == ua.StatusCodes.BadUserAccessDenied
            assert refusals(server, FREE_FAILURES) == [(USER, "wrong_password")] * FREE_FAILURES
            assert await sign_out_attempt(server, tmp_path, PASSWORD) is None

        run(lockout())
    finally:
        server.stop()


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
