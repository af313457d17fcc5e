//! Live syslog receivers: UDP (one datagram = one message), TCP and TLS (RFC 6587 / RFC 5425
//! framing). They only frame bytes into raw lines and hand them to the log pipeline over one
//! bounded channel; parsing happens on the pipeline thread.
//!
//! When the channel is full: the UDP receiver drops the message and counts it (the sensor cannot
//! pause the senders); TCP and TLS connections wait, which pushes back on the sender through TCP.

use super::framing::Framer;
use super::LineOptions;
use canh_event::Timestamp;
use prometheus::{IntCounter, IntCounterVec};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Which input a line came from (also the `input` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Udp,
    Tcp,
    Tls,
    File,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Udp => "udp",
            InputKind::Tcp => "tcp",
            InputKind::Tls => "tls",
            InputKind::File => "file",
        }
    }
}

/// Where a tailed line ended, so the pipeline can checkpoint after sending it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    pub path: Arc<str>,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// One message or line, not yet parsed.
#[derive(Debug)]
pub struct RawLine {
    pub bytes: Vec<u8>,
    pub truncated: bool,
    pub received: Timestamp,
    pub input: InputKind,
    pub options: LineOptions,
    pub position: Option<FilePosition>,
}

/// Counters the receivers update.
#[derive(Clone)]
pub struct ReceiverMetrics {
    pub lines: IntCounterVec,
    pub truncated: IntCounterVec,
    pub dropped: IntCounterVec,
    pub connections_refused: IntCounter,
    pub udp_kernel_drops: prometheus::IntGauge,
}

pub fn now() -> Timestamp {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

/// Strip what terminates a datagram: LF, CR LF or NUL.
fn trim_datagram(mut message: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = message.split_last() {
        if matches!(last, b'\n' | b'\r' | 0) {
            message = rest;
        } else {
            break;
        }
    }
    message
}

/// Receive datagrams on `socket` until `stop` is set. Blocking: runs on its own thread.
pub fn run_udp(
    socket: UdpSocket,
    max_bytes: usize,
    options: LineOptions,
    tx: mpsc::Sender<RawLine>,
    stop: Arc<AtomicBool>,
    metrics: ReceiverMetrics,
) -> std::io::Result<()> {
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    // The largest UDP payload; a datagram longer than max_bytes is cut after it is read whole.
    let mut buf = vec![0u8; 65_536];
    let label = [InputKind::Udp.as_str()];
    let (lines, truncated_lines, dropped) = (
        metrics.lines.with_label_values(&label),
        metrics.truncated.with_label_values(&label),
        metrics.dropped.with_label_values(&label),
    );
    let port = socket.local_addr()?.port();
    let mut last_stats = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_stats.elapsed() >= Duration::from_secs(1) {
            if let Some(drops) = udp_kernel_drops(port) {
                metrics.udp_kernel_drops.set(i64::try_from(drops).unwrap_or(i64::MAX));
            }
            last_stats = std::time::Instant::now();
        }
        let n = match socket.recv_from(&mut buf) {
            Ok((n, _peer)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        lines.inc();
        let message = trim_datagram(&buf[..n]);
        let truncated = message.len() > max_bytes;
        if truncated {
            truncated_lines.inc();
        }
        let line = RawLine {
            bytes: message[..message.len().min(max_bytes)].to_vec(),
            truncated,
            received: now(),
            input: InputKind::Udp,
            options,
            position: None,
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => dropped.inc(),
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
    }
    Ok(())
}

/// Datagrams the kernel dropped on UDP sockets bound to `port` (the `drops` column of
/// /proc/net/udp and /proc/net/udp6): what a flood cost before the sensor could read it.
pub fn udp_kernel_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                let drops = fields.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
                *total.get_or_insert(0) += drops;
            }
        }
    }
    total
}

/// A TCP or TLS listener's settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_bytes: usize,
    pub options: LineOptions,
    /// PEM certificate chain and key: TLS (RFC 5425) when set.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("binding {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("reading tls certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("tls configuration: {0}")]
    Tls(String),
    #[error("reading log checkpoints {path}: {source}")]
    Checkpoints { path: String, source: std::io::Error },
    #[error("starting the syslog stream runtime: {0}")]
    Runtime(std::io::Error),
}

/// Load the certificate chain and key of a TLS listener.
pub fn tls_acceptor(
    cert: &PathBuf,
    key: &PathBuf,
) -> Result<tokio_rustls::TlsAcceptor, ReceiveError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ReceiveError::Certificate {
            path: cert.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ReceiveError::Certificate {
            path: cert.display().to_string(),
            message: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ReceiveError::Certificate {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ReceiveError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ReceiveError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accept connections until `stop` is set. Connections past `max_connections` are closed at once
/// and counted; the ones already open are not affected.
pub async fn run_stream(
    listener: tokio::net::TcpListener,
    settings: StreamSettings,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<RawLine>,
    stop: Arc<AtomicBool>,
    metrics: ReceiverMetrics,
) {
    let kind = if acceptor.is_some() { InputKind::Tls } else { InputKind::Tcp };
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    metrics.connections_refused.inc();
                    tracing::debug!(%peer, "syslog connection refused at the limit");
                    drop(stream);
                    continue;
                };
                let (settings, tx, stop, metrics) =
                    (settings.clone(), tx.clone(), stop.clone(), metrics.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match acceptor {
                        None => read_stream(stream, kind, &settings, &tx, &stop, &metrics).await,
                        Some(acceptor) => {
                            let handshake = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(stream),
                            );
                            match handshake.await {
                                Ok(Ok(tls)) => {
                                    read_stream(tls, kind, &settings, &tx, &stop, &metrics).await
                                }
                                _ => tracing::debug!(%peer, "tls handshake failed"),
                            }
                        }
                    }
                });
            }
            _ = tick.tick() => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
}

async fn read_stream(
    mut stream: impl AsyncRead + Unpin,
    kind: InputKind,
    settings: &StreamSettings,
    tx: &mpsc::Sender<RawLine>,
    stop: &AtomicBool,
    metrics: &ReceiverMetrics,
) {
    let mut framer = Framer::new(settings.max_bytes);
    let mut buf = vec![0u8; 16 * 1024];
    let mut messages: Vec<(Vec<u8>, bool)> = Vec::new();
    let label = [kind.as_str()];
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let read = tokio::time::timeout(settings.idle_timeout, stream.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(n)) => n,
            // Idle past the timeout, or a read error: close the connection.
            Ok(Err(_)) | Err(_) => 0,
        };
        if n == 0 {
            framer.finish(&mut |m: &[u8], t| messages.push((m.to_vec(), t)));
        } else {
            framer.push(&buf[..n], &mut |m: &[u8], t| messages.push((m.to_vec(), t)));
        }
        let received = now();
        for (bytes, truncated) in messages.drain(..) {
            metrics.lines.with_label_values(&label).inc();
            if truncated {
                metrics.truncated.with_label_values(&label).inc();
            }
            let line = RawLine {
                bytes,
                truncated,
                received,
                input: kind,
                options: settings.options,
                position: None,
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if n == 0 {
            return;
        }
    }
}

/// Bind a TCP listener (std, so the error surfaces at start-up) for `run_stream`.
pub fn bind_tcp(addr: SocketAddr) -> Result<std::net::TcpListener, ReceiveError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ReceiveError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| ReceiveError::Bind { addr, source })?;
    Ok(listener)
}

/// Bind the syslog UDP socket with a receive buffer of about `receive_buffer_bytes`; returns the
/// socket and the SO_RCVBUF the kernel granted (Linux reports twice what it accepted).
/// Linux caps SO_RCVBUF at `net.core.rmem_max`; past that cap the size is asked again with
/// SO_RCVBUFFORCE, which a sensor with CAP_NET_ADMIN is granted (as rsyslog's imudp does), and
/// otherwise the capped size stays.
pub fn bind_udp(
    addr: SocketAddr,
    receive_buffer_bytes: usize,
) -> Result<(UdpSocket, usize), ReceiveError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_error = |source| ReceiveError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_error)?;
    socket.set_recv_buffer_size(receive_buffer_bytes).map_err(bind_error)?;
    if socket.recv_buffer_size().map_err(bind_error)? / 2 < receive_buffer_bytes {
        // Refused without CAP_NET_ADMIN: the capped size stays, and is reported.
        let _ =
            rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, receive_buffer_bytes);
    }
    socket.bind(&addr.into()).map_err(bind_error)?;
    let granted = socket.recv_buffer_size().map_err(bind_error)?;
    Ok((socket.into(), granted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_terminators_are_dropped() {
        assert_eq!(trim_datagram(b"<13>x\r\n\0"), b"<13>x");
        assert_eq!(trim_datagram(b"\n"), b"");
        assert_eq!(trim_datagram(b""), b"");
    }

    #[test]
    fn receive_buffer_is_asked_for_and_reported() {
        let (small, small_granted) =
            bind_udp("127.0.0.1:0".parse().expect("addr"), 4096).expect("bind");
        let (_large, large_granted) =
            bind_udp("127.0.0.1:0".parse().expect("addr"), 1 << 20).expect("bind");
        // Linux doubles what it accepts; a larger request is granted more, up to rmem_max.
        assert!(small_granted >= 4096, "{small_granted}");
        assert!(large_granted > small_granted, "{large_granted} vs {small_granted}");
        assert!(small.local_addr().expect("addr").port() > 0);
    }

    /// Whether this process has CAP_NET_ADMIN (bit 12 of CapEff in /proc/self/status).
    fn has_net_admin() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 12) != 0)
    }

    #[test]
    fn receive_buffer_past_rmem_max_is_forced_when_allowed() {
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .expect("rmem_max readable");
        let asked = rmem_max * 2;
        let (_socket, granted) =
            bind_udp("127.0.0.1:0".parse().expect("addr"), asked).expect("bind");
        if has_net_admin() {
            assert!(granted / 2 >= asked, "asked {asked}, granted {granted}");
        } else {
            assert_eq!(granted / 2, rmem_max);
        }
    }

    #[test]
    fn kernel_drops_of_an_unbound_port_are_unknown() {
        // A socket that received nothing has dropped nothing.
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        assert_eq!(udp_kernel_drops(port), Some(0));
        drop(socket);
    }
}
