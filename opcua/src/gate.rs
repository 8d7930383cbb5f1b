//! The door in front of the stack: who may hold a connection and a session.
//!
//! async-opcua 0.19 lets anyone who reaches the port open a SecurityPolicy
//! None channel (clients need one for GetEndpoints) and create a session on
//! it, whether or not the server offers a None endpoint: the endpoint is only
//! checked at ActivateSession. A session that is never activated lives for
//! the session timeout (60 s) and counts against the server's 20, so twenty
//! `CreateSession` calls without a certificate locked the line's trusted HMI
//! out (issue 22, finding 2). The stack has no hook for any of this, so the
//! server listens here, on the public port, and passes each connection on to
//! the stack, which listens on loopback only (`serve`). On the way, it
//! reads the framing of what the client sends (never the content of a
//! secured message, which it cannot read) and applies these rules:
//!
//! - at most [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_ADDRESS`]
//!   from one address;
//! - the Hello complete within [`HELLO_TIMEOUT`] of the connection, and every
//!   message chunk, once begun, within [`CHUNK_TIMEOUT`] (a client that
//!   stops half-way through is closed);
//! - on a None channel, a client has no certificate. Unless the None
//!   endpoint is enabled it may only ask for the endpoints and servers
//!   (GetEndpoints, FindServers): anything else, a CreateSession first, closes
//!   the connection. A secured channel needs a certificate the server trusts
//!   (the stack checks it when the channel opens), so **no session exists
//!   without a trusted certificate unless None is enabled**;
//! - where None is enabled, certificate-less sessions are bounded: one per
//!   connection, [`CERTIFICATE_LESS_SESSIONS_PER_ADDRESS`] per address, and
//!   [`MAX_SESSIONS`] − [`RESERVED_SESSIONS`] in all, so that
//!   [`RESERVED_SESSIONS`] sessions are always left for clients with a
//!   trusted certificate (the line's HMI). A session that is not activated
//!   within [`ACTIVATION_TIMEOUT`] closes its connection. A session outlives
//!   its connection in the stack (for a reconnect) until its timeout, so its
//!   place is counted until [`SESSION_TIMEOUT`] after the connection closed,
//!   unless the client closed the session.
//!
//! The rules are counted per connection and per address in `Gate`, the
//! framing is read in `Frame`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::opcua::crypto::SecurityPolicy;
use ::opcua::types::ObjectId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most connections at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The most connections at once from one address.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 8;
/// The sessions the stack holds at most (async-opcua's default).
pub const MAX_SESSIONS: usize = 20;
/// Sessions that clients without a certificate (None channels) cannot take.
pub const RESERVED_SESSIONS: usize = 8;
/// Certificate-less sessions from one address.
pub const CERTIFICATE_LESS_SESSIONS_PER_ADDRESS: usize = 4;
/// The longest a session is kept without a request (the stack's maximum
/// session timeout: a client that asks for more gets this).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// The Hello must be complete this long after the connection was accepted.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// A message chunk, once begun, must be complete within this.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// A certificate-less session must be activated within this of its
/// CreateSession, or its connection is closed.
pub const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(5);

/// What is counted across connections.
#[derive(Default)]
struct Counts {
    connections: HashMap<IpAddr, usize>,
    /// Certificate-less sessions by address, with when each place is free
    /// again (`None`: its connection is still open).
    sessions: Vec<(IpAddr, Option<Instant>)>,
}

impl Counts {
    fn forget_expired(&mut self, now: Instant) {
        self.sessions
            .retain(|(_, until)| until.is_none_or(|until| until > now));
    }
}

/// The counts every connection shares.
#[derive(Default)]
pub(crate) struct Gate {
    counts: Mutex<Counts>,
}

impl Gate {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `ip`, or why not.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let mut counts = self.counts();
        let total: usize = counts.connections.values().sum();
        if total >= MAX_CONNECTIONS {
            return Err("the server has as many connections as it takes");
        }
        let from_ip = counts.connections.entry(ip).or_default();
        if *from_ip >= MAX_CONNECTIONS_PER_ADDRESS {
            return Err("this address has as many connections as it may");
        }
        *from_ip += 1;
        Ok(Admitted {
            gate: Arc::clone(self),
            ip,
            sessions: 0,
        })
    }
}

/// One admitted connection; dropping it frees the connection's place and
/// starts the countdown of its sessions' places.
struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
    /// Certificate-less sessions created on this connection and not closed.
    sessions: usize,
}

impl Admitted {
    /// Counts a certificate-less session, or says why there is no place.
    fn take_session(&mut self) -> Result<(), &'static str> {
        if self.sessions >= 1 {
            return Err("a connection without a certificate holds one session at most");
        }
        let mut counts = self.gate.counts();
        counts.forget_expired(Instant::now());
        if counts.sessions.len() >= MAX_SESSIONS - RESERVED_SESSIONS {
            return Err("the sessions left are reserved for clients with a trusted certificate");
        }
        let from_ip = counts
            .sessions
            .iter()
            .filter(|(a, _)| *a == self.ip)
            .count();
        if from_ip >= CERTIFICATE_LESS_SESSIONS_PER_ADDRESS {
            return Err("this address holds as many sessions without a certificate as it may");
        }
        counts.sessions.push((self.ip, None));
        self.sessions += 1;
        Ok(())
    }

    /// The client closed a session: its place is free at once.
    fn close_session(&mut self) {
        if self.sessions == 0 {
            return;
        }
        self.sessions -= 1;
        let mut counts = self.gate.counts();
        if let Some(i) = counts
            .sessions
            .iter()
            .position(|&(a, until)| a == self.ip && until.is_none())
        {
            counts.sessions.swap_remove(i);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        if let Some(n) = counts.connections.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.connections.remove(&self.ip);
            }
        }
        let until = Instant::now() + SESSION_TIMEOUT;
        let mut left = self.sessions;
        for (a, held) in counts.sessions.iter_mut() {
            if left == 0 {
                break;
            }
            if *a == self.ip && held.is_none() {
                *held = Some(until);
                left -= 1;
            }
        }
    }
}

/// Accepts connections on `public` and passes each one admitted to the
/// stack at `inner`, until the task is dropped.
pub(crate) async fn serve(
    public: TcpListener,
    inner: SocketAddr,
    allow_security_none: bool,
    max_frame: usize,
) {
    let gate = Arc::new(Gate::default());
    loop {
        let (client, peer) = match public.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "OPC UA: could not accept a connection");
                // E.g. out of file descriptors: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admitted = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(%peer, why, "OPC UA: connection refused");
                continue; // dropping `client` closes it
            }
        };
        let _ = client.set_nodelay(true);
        tokio::spawn(async move {
            let connection = Connection {
                admitted,
                peer,
                allow_security_none,
                max_frame,
            };
            connection.run(client, inner).await;
        });
    }
}

struct Connection {
    admitted: Admitted,
    peer: SocketAddr,
    allow_security_none: bool,
    max_frame: usize,
}

/// Why the gate ended a connection early.
type Refusal = &'static str;

impl Connection {
    async fn run(mut self, client: TcpStream, inner: SocketAddr) {
        let server = match TcpStream::connect(inner).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "OPC UA: the stack does not answer on loopback");
                return;
            }
        };
        let _ = server.set_nodelay(true);
        let (client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let mut down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        });
        let peer = self.peer;
        let up = {
            let forward = self.forward(client_read, &mut server_write);
            tokio::select! {
                up = forward => Some(up),
                _ = &mut down => None,
            }
        };
        match up {
            Some(Ok(())) => {
                // The client is done sending: let the stack answer and close.
                let _ = server_write.shutdown().await;
                let _ = tokio::time::timeout(CHUNK_TIMEOUT, &mut down).await;
            }
            Some(Err(why)) => {
                tracing::warn!(%peer, why, "OPC UA: connection closed by the gate");
            }
            // The stack closed the connection.
            None => {}
        }
        down.abort();
    }

    /// Reads the client's frames and passes them on while the rules allow;
    /// `Ok` at the client's end of stream.
    async fn forward(
        &mut self,
        mut client: tokio::net::tcp::OwnedReadHalf,
        server: &mut tokio::net::tcp::OwnedWriteHalf,
    ) -> Result<(), Refusal> {
        let accepted = Instant::now();
        let max_frame = self.max_frame;
        let mut hello_done = false;
        let mut none_channel = false;
        let mut chunking: Option<u32> = None;
        // When a certificate-less session must be activated by.
        let mut activate_by: Option<Instant> = None;
        let mut frame = Vec::new();
        loop {
            // A client that keeps sending other requests is not activating
            // either.
            if activate_by.is_some_and(|d| Instant::now() >= d) {
                return Err(deadline_refusal(true));
            }
            // The next frame's first byte: before the Hello deadline, or the
            // activation deadline, or (between messages) any time.
            let deadline = if !hello_done {
                Some(accepted + HELLO_TIMEOUT)
            } else {
                activate_by
            };
            let mut first = [0u8; 1];
            let n = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), client.read(&mut first))
                    .await
                    .map_err(|_| deadline_refusal(hello_done))?,
                None => client.read(&mut first).await,
            }
            .map_err(|_| "the connection failed")?;
            if n == 0 {
                return Ok(());
            }
            // The rest of the frame within the chunk timeout (and the Hello
            // deadline).
            let mut by = Instant::now() + CHUNK_TIMEOUT;
            if !hello_done {
                by = by.min(accepted + HELLO_TIMEOUT);
            }
            frame.clear();
            frame.push(first[0]);
            let read = async {
                let mut header = [0u8; 7];
                client.read_exact(&mut header).await?;
                frame.extend_from_slice(&header);
                let size = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
                if size < 8 || size > max_frame {
                    return Ok(false);
                }
                frame.resize(size, 0);
                client.read_exact(&mut frame[8..]).await?;
                Ok::<bool, std::io::Error>(true)
            };
            let framed = tokio::time::timeout_at(by.into(), read)
                .await
                .map_err(|_| deadline_refusal(hello_done))?
                .map_err(|_| "the connection failed")?;
            if !framed {
                // Let the stack answer the bad header with its own error.
                let _ = server.write_all(&frame).await;
                return Ok(());
            }
            match Frame::parse(&frame) {
                Frame::Hello => hello_done = true,
                Frame::Open { policy_none } => none_channel = policy_none,
                Frame::Message {
                    request_id,
                    last,
                    type_id,
                } => {
                    let first_chunk = chunking != Some(request_id);
                    chunking = (!last).then_some(request_id);
                    if none_channel && first_chunk {
                        self.check_certificate_less(type_id, &mut activate_by)?;
                    }
                }
                Frame::Other => {}
            }
            server
                .write_all(&frame)
                .await
                .map_err(|_| "the stack closed the connection")?;
        }
    }

    /// The rules for a request on a None channel (`type_id`: its encoding
    /// id, `None` where it is not a numeric id of namespace 0).
    fn check_certificate_less(
        &mut self,
        type_id: Option<u32>,
        activate_by: &mut Option<Instant>,
    ) -> Result<(), Refusal> {
        let is = |id: ObjectId| type_id == Some(id as u32);
        if is(ObjectId::GetEndpointsRequest_Encoding_DefaultBinary)
            || is(ObjectId::FindServersRequest_Encoding_DefaultBinary)
            || is(ObjectId::FindServersOnNetworkRequest_Encoding_DefaultBinary)
        {
            return Ok(());
        }
        if !self.allow_security_none {
            return Err(
                "a client without a certificate may only ask for the endpoints: the None endpoint is off",
            );
        }
        if is(ObjectId::CreateSessionRequest_Encoding_DefaultBinary) {
            self.admitted.take_session()?;
            activate_by.get_or_insert(Instant::now() + ACTIVATION_TIMEOUT);
        } else if is(ObjectId::ActivateSessionRequest_Encoding_DefaultBinary) {
            *activate_by = None;
        } else if is(ObjectId::CloseSessionRequest_Encoding_DefaultBinary) {
            self.admitted.close_session();
            *activate_by = None;
        }
        Ok(())
    }
}

fn deadline_refusal(hello_done: bool) -> Refusal {
    if hello_done {
        "a message stopped half-way, or a session was not activated in time"
    } else {
        "no complete Hello in time"
    }
}

/// What the gate reads of a frame the client sent (OPC UA Part 6, 7.1):
/// the message header, and for an OpenSecureChannel its security policy,
/// for a message chunk its request id and, where it is readable (None
/// channels), the request's type.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Hello,
    Open {
        policy_none: bool,
    },
    Message {
        request_id: u32,
        /// The final (or an abort) chunk of its message.
        last: bool,
        /// The encoding id of the request, a numeric NodeId of namespace 0
        /// right after the sequence header; meaningful only for the first
        /// chunk of a message on a None channel.
        type_id: Option<u32>,
    },
    Other,
}

impl Frame {
    fn parse(frame: &[u8]) -> Frame {
        let u32_at = |at: usize| {
            frame
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match frame.get(..3) {
            Some(b"HEL") => Frame::Hello,
            Some(b"OPN") => {
                // Header (8), secure channel id (4), the policy URI as a
                // String (Int32 length, UTF-8).
                let none = SecurityPolicy::None.to_uri().as_bytes();
                let policy_none = u32_at(12)
                    .and_then(|len| frame.get(16..16 + len as usize))
                    .is_some_and(|uri| uri == none);
                Frame::Open { policy_none }
            }
            Some(b"MSG") => {
                // Header (8), channel id (4), token id (4), sequence number
                // (4), request id (4), then the body's type NodeId.
                let Some(request_id) = u32_at(20) else {
                    return Frame::Other;
                };
                let type_id = match frame.get(24) {
                    Some(0x00) => frame.get(25).map(|&b| u32::from(b)),
                    Some(0x01) if frame.get(25) == Some(&0) => frame
                        .get(26..28)
                        .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
                    Some(0x02) if frame.get(25..27) == Some(&[0u8, 0][..]) => u32_at(27),
                    _ => None,
                };
                Frame::Message {
                    request_id,
                    last: frame.get(3) != Some(&b'C'),
                    type_id,
                }
            }
            _ => Frame::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(chunk: u8, request_id: u32, node_id: &[u8]) -> Vec<u8> {
        let mut f = b"MSG".to_vec();
        f.push(chunk);
        f.extend_from_slice(&0u32.to_le_bytes()); // size: not read here
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&request_id.to_le_bytes());
        f.extend_from_slice(node_id);
        f
    }

    #[test]
    fn frames_say_their_kind_policy_and_request_type() {
        assert_eq!(Frame::parse(b"HELF\x20\0\0\0"), Frame::Hello);
        let open = |uri: &str| {
            let mut f = b"OPNF\0\0\0\0\0\0\0\0".to_vec();
            f.extend_from_slice(&(uri.len() as u32).to_le_bytes());
            f.extend_from_slice(uri.as_bytes());
            f
        };
        assert_eq!(
            Frame::parse(&open("http://opcfoundation.org/UA/SecurityPolicy#None")),
            Frame::Open { policy_none: true }
        );
        assert_eq!(
            Frame::parse(&open(
                "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
            )),
            Frame::Open { policy_none: false }
        );
        // A length that runs past the frame is no None policy.
        assert_eq!(
            Frame::parse(b"OPNF\0\0\0\0\0\0\0\0\xff\0\0\0http"),
            Frame::Open { policy_none: false }
        );
        // CreateSessionRequest (461) in the four-byte and the numeric form.
        let create = ObjectId::CreateSessionRequest_Encoding_DefaultBinary as u32;
        assert_eq!(
            Frame::parse(&msg(b'F', 7, &[0x01, 0, 0xcd, 0x01])),
            Frame::Message {
                request_id: 7,
                last: true,
                type_id: Some(create)
            }
        );
        assert_eq!(
            Frame::parse(&msg(b'C', 8, &[0x02, 0, 0, 0xcd, 0x01, 0, 0])),
            Frame::Message {
                request_id: 8,
                last: false,
                type_id: Some(create)
            }
        );
        // Another namespace, or a string id, is no request type of ours.
        assert_eq!(
            Frame::parse(&msg(b'F', 9, &[0x01, 2, 0xcd, 0x01])),
            Frame::Message {
                request_id: 9,
                last: true,
                type_id: None
            }
        );
        assert_eq!(Frame::parse(b"MSGF\0\0"), Frame::Other);
        assert_eq!(Frame::parse(b"XYZ"), Frame::Other);
    }

    #[test]
    fn certificate_less_sessions_leave_the_reserve_and_count_after_close() {
        let gate = Arc::new(Gate::default());
        let mut held = Vec::new();
        // From many addresses, until the pool without certificates is full.
        for i in 0..(MAX_SESSIONS - RESERVED_SESSIONS) {
            let ip = IpAddr::from([10, 0, 0, i as u8]);
            let mut c = gate.admit(ip).unwrap();
            c.take_session().unwrap();
            // One session per connection.
            assert!(c.take_session().is_err());
            held.push(c);
        }
        let mut late = gate.admit(IpAddr::from([10, 0, 1, 1])).unwrap();
        assert!(late.take_session().is_err(), "the reserve was taken");
        // Closed connections still hold their places (the stack keeps the
        // session until its timeout)...
        held.clear();
        assert!(late.take_session().is_err());
        // ...but a session the client closed frees its place at once.
        let mut c = gate.admit(IpAddr::from([10, 0, 2, 1])).unwrap();
        gate.counts().sessions.clear();
        c.take_session().unwrap();
        c.close_session();
        assert!(gate.counts().sessions.is_empty());
    }

    #[test]
    fn one_address_is_capped_in_connections_and_sessions() {
        let gate = Arc::new(Gate::default());
        let ip = IpAddr::from([10, 0, 0, 1]);
        let mut open: Vec<_> = (0..MAX_CONNECTIONS_PER_ADDRESS)
            .map(|_| gate.admit(ip).unwrap())
            .collect();
        assert!(gate.admit(ip).is_err());
        // Another address still gets in.
        assert!(gate.admit(IpAddr::from([10, 0, 0, 2])).is_ok());
        let mut taken = 0;
        for c in open.iter_mut() {
            if c.take_session().is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, CERTIFICATE_LESS_SESSIONS_PER_ADDRESS);
        open.pop();
        assert!(
            gate.admit(ip).is_ok(),
            "a closed connection frees its place"
        );
    }
}
