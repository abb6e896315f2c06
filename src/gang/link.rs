//! Authenticated QUIC links between ranks.
//!
//! Every rank runs one QUIC endpoint (quinn over rustls, TLS 1.3) with a throwaway
//! self-signed certificate. Certificates prove nothing here; the gang's shared secret (a
//! Kubernetes Secret mounted as a file) does. Right after the TLS handshake both sides derive
//! the same 32 bytes from the session (`export_keying_material`) and exchange a `Hello`
//! (protocol version, job identity, restart attempt, rank, world size, fingerprint of the
//! training parameters and input) sealed with HMAC-SHA256(secret, role || session || hello).
//! Binding the tag to the session means a relay in the middle cannot replay it. A peer that
//! cannot produce the tag is refused before any data flows; a peer that can but disagrees on
//! the job is a named, fatal mismatch.
//!
//! Owns connections and the handshake; knows nothing of collectives, books or orders.

use std::net::SocketAddr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Bumped whenever the wire format changes; peers must agree.
pub const PROTOCOL_VERSION: u32 = 2;
/// Shorter secrets are refused: `cooc secret` prints 32 random bytes, hex encoded.
pub const MIN_SECRET_BYTES: usize = 16;
const SERVER_NAME: &str = "cooc-rank";
const EXPORT_LABEL: &[u8] = b"cooc rendezvous v1";
/// QUIC application close codes.
const CLOSE_AUTH: u32 = 1;
const CLOSE_MISMATCH: u32 = 2;
const CLOSE_OTHER_RUN: u32 = 4;
/// A hello is small; anything larger is not a cooc peer.
const MAX_HELLO: u32 = 64 * 1024;

/// What a rank says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The rank protocol's version.
    pub protocol: u32,
    /// JobSet UID, or a run id outside Kubernetes.
    pub job: String,
    /// The gang's restart attempt.
    pub restart_attempt: u32,
    /// The sender's rank.
    pub rank: u32,
    /// Ranks in the gang.
    pub world: u32,
    /// Fingerprint of the training parameters and input.
    pub fingerprint: String,
}

/// Why a link could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The shared secret is shorter than `MIN_SECRET_BYTES`.
    #[error("the shared secret must be at least {MIN_SECRET_BYTES} bytes, got {0}")]
    WeakSecret(usize),
    /// The endpoint could not bind its address.
    #[error("QUIC endpoint on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A peer could not be reached.
    #[error("connecting to {peer}: {detail}")]
    Connect {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// A peer failed authentication.
    #[error("peer {peer} failed authentication (wrong or missing shared secret); refused before any data")]
    Auth {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A peer of another job, run or plan.
    #[error("peer {peer} is not part of this gang: {detail}")]
    Mismatch {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// A peer with the secret but of another run (job or restart attempt): refused, and the
    /// gang goes on without it.
    #[error("peer {peer} belongs to another run: {detail}")]
    OtherRun {
        /// The peer's address.
        peer: SocketAddr,
        /// What differs.
        detail: String,
    },
    /// A peer broke the handshake protocol.
    #[error("peer {peer}: {detail}")]
    Protocol {
        /// The peer's address.
        peer: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The endpoint was closed.
    #[error("the endpoint is closed")]
    Closed,
}

impl LinkError {
    /// The QUIC close code that tells the peer why it was refused.
    fn close_code(&self) -> u32 {
        match self {
            LinkError::OtherRun { .. } => CLOSE_OTHER_RUN,
            _ => CLOSE_MISMATCH,
        }
    }

    /// What differs, for a mismatch; the whole message otherwise.
    fn detail(&self) -> String {
        match self {
            LinkError::Mismatch { detail, .. } | LinkError::OtherRun { detail, .. } => {
                detail.clone()
            }
            e => e.to_string(),
        }
    }
}

/// An established, authenticated link.
#[derive(Debug)]
pub struct Link {
    /// The authenticated QUIC connection.
    pub conn: quinn::Connection,
    /// What the peer said about itself (already checked against this rank).
    pub peer: Hello,
}

/// Authenticates incoming connections: this rank's secret and hello, shareable across
/// tasks.
#[derive(Clone)]
pub struct Authenticator {
    secret: Arc<[u8]>,
    hello: Hello,
}

impl Authenticator {
    /// Completes the TLS handshake of `incoming` and checks the peer's sealed hello. A
    /// refused peer is an `Err` for this one connection only. Callers bound it with a
    /// deadline: a client that completes TLS and then says nothing must not hold a rank.
    pub async fn authenticate(&self, incoming: quinn::Incoming) -> Result<Link, LinkError> {
        let peer = incoming.remote_address();
        let conn = incoming.await.map_err(|e| LinkError::Connect {
            peer,
            detail: e.to_string(),
        })?;
        let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| LinkError::Protocol {
            peer,
            detail: e.to_string(),
        })?;
        let binding = session_binding(&conn, peer)?;
        let frame = read_frame(&mut recv, peer).await?;
        let theirs = match open(&self.secret, Role::Client, &binding, &frame, peer) {
            Ok(h) => h,
            Err(e) => {
                conn.close(CLOSE_AUTH.into(), b"authentication failed");
                return Err(e);
            }
        };
        if let Err(e) = check_peer(&self.hello, &theirs, None, peer) {
            conn.close(e.close_code().into(), e.detail().as_bytes());
            return Err(e);
        }
        write_frame(
            &mut send,
            &sealed(&self.secret, &self.hello, Role::Server, &binding),
            peer,
        )
        .await?;
        Ok(Link { conn, peer: theirs })
    }
}

/// This rank's endpoint: accepts and opens authenticated links.
pub struct Node {
    endpoint: quinn::Endpoint,
    secret: Arc<[u8]>,
    hello: Hello,
}

impl Node {
    /// Binds a QUIC endpoint on `addr` (port 0 for any).
    pub fn bind(addr: SocketAddr, secret: &[u8], hello: Hello) -> Result<Node, LinkError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(LinkError::WeakSecret(secret.len()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let cert_der = CertificateDer::from(cert.cert);
        let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
        let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| LinkError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key.into())
            .map_err(|e| LinkError::Tls(e.to_string()))?;
        let transport = Arc::new(transport_config());
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server_tls).map_err(|e| LinkError::Tls(e.to_string()))?,
        ));
        server.transport_config(transport.clone());
        let client_tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| LinkError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth();
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client_tls).map_err(|e| LinkError::Tls(e.to_string()))?,
        ));
        client.transport_config(transport);
        let mut endpoint = quinn::Endpoint::server(server, addr)
            .map_err(|source| LinkError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        Ok(Node {
            endpoint,
            secret: secret.into(),
            hello,
        })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Opens a link to `peer`, which must turn out to be rank `expect_rank`.
    pub async fn connect(&self, peer: SocketAddr, expect_rank: u32) -> Result<Link, LinkError> {
        let connecting =
            self.endpoint
                .connect(peer, SERVER_NAME)
                .map_err(|e| LinkError::Connect {
                    peer,
                    detail: e.to_string(),
                })?;
        let conn = connecting.await.map_err(|e| LinkError::Connect {
            peer,
            detail: e.to_string(),
        })?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| LinkError::Connect {
            peer,
            detail: e.to_string(),
        })?;
        let binding = session_binding(&conn, peer)?;
        write_frame(
            &mut send,
            &sealed(&self.secret, &self.hello, Role::Client, &binding),
            peer,
        )
        .await?;
        let reply = match read_frame(&mut recv, peer).await {
            Ok(r) => r,
            // The server closes with CLOSE_AUTH/CLOSE_MISMATCH when it refuses us.
            Err(e) => return Err(refusal(&conn, peer).unwrap_or(e)),
        };
        let theirs = open(&self.secret, Role::Server, &binding, &reply, peer)?;
        if let Err(e) = check_peer(&self.hello, &theirs, Some(expect_rank), peer) {
            conn.close(e.close_code().into(), e.detail().as_bytes());
            return Err(e);
        }
        Ok(Link { conn, peer: theirs })
    }

    /// Waits for the next incoming connection, not yet authenticated; `None` once the
    /// endpoint is closed.
    pub async fn incoming(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// What [`Node::authenticate`] needs, detached from the node so that each incoming
    /// connection can be authenticated in a task of its own.
    pub fn authenticator(&self) -> Authenticator {
        Authenticator {
            secret: self.secret.clone(),
            hello: self.hello.clone(),
        }
    }

    /// Test support: accepts and authenticates the next connection.
    #[cfg(test)]
    pub(crate) async fn accept(&self) -> Result<Link, LinkError> {
        let incoming = self.incoming().await.ok_or(LinkError::Closed)?;
        self.authenticator().authenticate(incoming).await
    }

    /// Test support: dials `peer` and completes TLS, then (with `promise`) opens a stream
    /// and announces a hello it never sends; the connection is held open by keep-alives.
    #[cfg(test)]
    pub(crate) async fn dial_silently(&self, peer: SocketAddr, promise: bool) -> quinn::Connection {
        let conn = self
            .endpoint
            .connect(peer, SERVER_NAME)
            .expect("dial")
            .await
            .expect("TLS completes");
        if promise {
            let (mut send, _recv) = conn.open_bi().await.expect("a stream");
            send.write_all(&64u32.to_le_bytes())
                .await
                .expect("a length");
            std::mem::forget(send);
        }
        conn
    }

    /// Closes every link and waits until the peers have been told.
    pub async fn shutdown(&self, reason: &str) {
        self.endpoint.close(0u32.into(), reason.as_bytes());
        self.endpoint.wait_idle().await;
    }
}

/// This rank's hello, sealed with the secret and bound to the TLS session.
fn sealed(secret: &[u8], hello: &Hello, role: Role, binding: &[u8]) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(hello, bincode::config::standard())
        .expect("a Hello always encodes");
    let mut out = tag(secret, role, binding, &body).to_vec();
    out.extend_from_slice(&body);
    out
}

/// The peer's hello, if its seal is good.
fn open(
    secret: &[u8],
    role: Role,
    binding: &[u8],
    frame: &[u8],
    peer: SocketAddr,
) -> Result<Hello, LinkError> {
    if frame.len() < 32 {
        return Err(LinkError::Auth { peer });
    }
    let (mac, body) = frame.split_at(32);
    let mut m = mac_for(secret, role, binding);
    m.update(body);
    m.verify_slice(mac).map_err(|_| LinkError::Auth { peer })?;
    super::wire::decode(body).map_err(|e| LinkError::Protocol {
        peer,
        detail: format!("bad hello: {e}"),
    })
}

/// [`compatible`] as a typed error: a peer of another run (job or restart attempt) is
/// [`LinkError::OtherRun`], to be refused without failing this one; any other difference
/// is [`LinkError::Mismatch`].
fn check_peer(
    me: &Hello,
    theirs: &Hello,
    expect_rank: Option<u32>,
    peer: SocketAddr,
) -> Result<(), LinkError> {
    compatible(me, theirs, expect_rank).map_err(|detail| {
        if theirs.job != me.job || theirs.restart_attempt != me.restart_attempt {
            LinkError::OtherRun { peer, detail }
        } else {
            LinkError::Mismatch { peer, detail }
        }
    })
}

/// A peer that says nothing for this long is lost (a SIGKILLed rank sends no goodbye).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// Bytes one stream may have in flight before the receiver reads them.
pub(crate) const STREAM_WINDOW: u32 = 64 << 20;

fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("8 s is a valid idle timeout"),
    ));
    // Ranks dial peers that may not listen yet; the lost Initial is resent after the probe
    // timeout, ~3x the initial RTT estimate. quinn's default (333 ms) made a gang's start
    // stall ~1 s whenever a dial came early; ranks share a cluster network, so assume 25 ms
    // until the handshake measures the real RTT.
    t.initial_rtt(std::time::Duration::from_millis(25));
    // Keep idle-but-healthy links (a rank busy counting) from timing out.
    t.keep_alive_interval(Some(std::time::Duration::from_secs(2)));
    // Collectives move tens of megabytes per message: windows far above the defaults keep
    // a single stream from stalling on flow control between acknowledgements.
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(256 << 20));
    t.send_window(256 << 20);
    t
}

/// Checks that a peer belongs to the same gang; the message names both sides.
pub fn compatible(me: &Hello, peer: &Hello, expect_rank: Option<u32>) -> Result<(), String> {
    let differ = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        Err(format!(
            "rank {} has {what} {a:?}, this rank {} has {b:?}",
            peer.rank, me.rank
        ))
    };
    if peer.protocol != me.protocol {
        return differ("protocol version", &peer.protocol, &me.protocol);
    }
    if peer.job != me.job {
        return differ("job", &peer.job, &me.job);
    }
    if peer.restart_attempt != me.restart_attempt {
        return differ(
            "restart attempt",
            &peer.restart_attempt,
            &me.restart_attempt,
        );
    }
    if peer.world != me.world {
        return differ("world size", &peer.world, &me.world);
    }
    if peer.fingerprint != me.fingerprint {
        return differ("training fingerprint", &peer.fingerprint, &me.fingerprint);
    }
    if peer.rank >= me.world || peer.rank == me.rank {
        return Err(format!(
            "peer claims rank {} (this is rank {} of {})",
            peer.rank, me.rank, me.world
        ));
    }
    if let Some(r) = expect_rank {
        if peer.rank != r {
            return Err(format!(
                "expected rank {r} at this address, found rank {}",
                peer.rank
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Role {
    Client,
    Server,
}

fn mac_for(secret: &[u8], role: Role, binding: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(match role {
        Role::Client => b"client",
        Role::Server => b"server",
    });
    m.update(binding);
    m
}

fn tag(secret: &[u8], role: Role, binding: &[u8], body: &[u8]) -> [u8; 32] {
    let mut m = mac_for(secret, role, binding);
    m.update(body);
    m.finalize().into_bytes().into()
}

fn session_binding(conn: &quinn::Connection, peer: SocketAddr) -> Result<[u8; 32], LinkError> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, EXPORT_LABEL, b"")
        .map_err(|_| LinkError::Protocol {
            peer,
            detail: "TLS keying material unavailable".into(),
        })?;
    Ok(out)
}

/// The reason a server gave for closing on us, if it did.
fn refusal(conn: &quinn::Connection, peer: SocketAddr) -> Option<LinkError> {
    match conn.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CLOSE_AUTH.into() => {
            Some(LinkError::Auth { peer })
        }
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CLOSE_MISMATCH.into() => {
            Some(LinkError::Mismatch {
                peer,
                detail: String::from_utf8_lossy(&c.reason).into_owned(),
            })
        }
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == CLOSE_OTHER_RUN.into() => {
            Some(LinkError::OtherRun {
                peer,
                detail: String::from_utf8_lossy(&c.reason).into_owned(),
            })
        }
        _ => None,
    }
}

async fn write_frame(
    send: &mut quinn::SendStream,
    body: &[u8],
    peer: SocketAddr,
) -> Result<(), LinkError> {
    let io = |e: &dyn std::fmt::Display| LinkError::Protocol {
        peer,
        detail: e.to_string(),
    };
    send.write_all(&(body.len() as u32).to_le_bytes())
        .await
        .map_err(|e| io(&e))?;
    send.write_all(body).await.map_err(|e| io(&e))
}

async fn read_frame(recv: &mut quinn::RecvStream, peer: SocketAddr) -> Result<Vec<u8>, LinkError> {
    let io = |e: &dyn std::fmt::Display| LinkError::Protocol {
        peer,
        detail: e.to_string(),
    };
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| io(&e))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HELLO {
        return Err(LinkError::Protocol {
            peer,
            detail: format!("hello of {len} bytes"),
        });
    }
    let mut body = vec![0u8; len as usize];
    recv.read_exact(&mut body).await.map_err(|e| io(&e))?;
    Ok(body)
}

/// Accepts any certificate: peers authenticate with the shared secret bound to the TLS
/// session, not with a PKI (ranks have no stable names to issue certificates for).
/// Handshake signatures are still verified, so the session keys belong to the certificate
/// the peer presented.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(rank: u32) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            job: "uid-1".into(),
            restart_attempt: 0,
            rank,
            world: 3,
            fingerprint: "crc32:1:len=2".into(),
        }
    }

    fn node(secret: &[u8], h: Hello) -> Node {
        Node::bind("127.0.0.1:0".parse().unwrap(), secret, h).unwrap()
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn ranks_authenticate_and_learn_each_other() {
        let (a, b) = (node(SECRET, hello(0)), node(SECRET, hello(1)));
        let addr = a.local_addr().unwrap();
        let (acc, con) = tokio::join!(a.accept(), b.connect(addr, 0));
        let (acc, con) = (acc.unwrap(), con.unwrap());
        assert_eq!(acc.peer.rank, 1);
        assert_eq!(con.peer.rank, 0);
        // The link carries data both ways.
        let (mut s, mut r) = con.conn.open_bi().await.unwrap();
        s.write_all(b"partial block").await.unwrap();
        s.finish().unwrap();
        let (mut s2, mut r2) = acc.conn.accept_bi().await.unwrap();
        assert_eq!(r2.read_to_end(100).await.unwrap(), b"partial block");
        s2.write_all(b"ack").await.unwrap();
        s2.finish().unwrap();
        assert_eq!(r.read_to_end(10).await.unwrap(), b"ack");
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_and_the_gang_goes_on() {
        let a = node(SECRET, hello(0));
        let intruder = node(b"fedcba9876543210fedcba9876543210", hello(1));
        let addr = a.local_addr().unwrap();
        let (acc, con) = tokio::join!(a.accept(), intruder.connect(addr, 0));
        assert!(matches!(acc, Err(LinkError::Auth { .. })), "{acc:?}");
        assert!(con.is_err(), "the intruder must not get a link");
        // A real peer still gets in.
        let b = node(SECRET, hello(2));
        let (acc, con) = tokio::join!(a.accept(), b.connect(addr, 0));
        assert_eq!(acc.unwrap().peer.rank, 2);
        assert_eq!(con.unwrap().peer.rank, 0);
    }

    #[tokio::test]
    async fn a_different_job_is_another_run_and_other_parameters_a_mismatch() {
        let a = node(SECRET, hello(0));
        let mut other = hello(1);
        other.job = "uid-2".into();
        let b = node(SECRET, other);
        let addr = a.local_addr().unwrap();
        let (acc, con) = tokio::join!(a.accept(), b.connect(addr, 0));
        let e = acc.unwrap_err();
        assert!(matches!(e, LinkError::OtherRun { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("uid-2") && e.contains("uid-1") && e.contains("rank 1"),
            "{e}"
        );
        assert!(matches!(con, Err(LinkError::OtherRun { .. })), "{con:?}");
        // Same job, other parameters: the same gang misconfigured, a fatal mismatch.
        let mut other = hello(2);
        other.fingerprint = "crc32:9:len=9".into();
        let c = node(SECRET, other);
        let (acc, con) = tokio::join!(a.accept(), c.connect(addr, 0));
        assert!(matches!(acc, Err(LinkError::Mismatch { .. })), "{acc:?}");
        assert!(matches!(con, Err(LinkError::Mismatch { .. })), "{con:?}");
    }

    #[test]
    fn compatibility_rules() {
        let me = hello(0);
        assert!(compatible(&me, &hello(1), Some(1)).is_ok());
        assert!(compatible(&me, &hello(1), Some(2))
            .unwrap_err()
            .contains("expected rank 2"));
        assert!(compatible(&me, &hello(0), None)
            .unwrap_err()
            .contains("claims rank 0"));
        let mut p = hello(2);
        p.restart_attempt = 1;
        assert!(compatible(&me, &p, None)
            .unwrap_err()
            .contains("restart attempt"));
        let mut p = hello(2);
        p.world = 4;
        assert!(compatible(&me, &p, None)
            .unwrap_err()
            .contains("world size"));
        assert!(matches!(
            Node::bind("127.0.0.1:0".parse().unwrap(), b"short", hello(0)),
            Err(LinkError::WeakSecret(5))
        ));
    }
}
