//! Zero-downtime binary upgrade: a running process hands its listening
//! sockets to a successor over a Unix socket (`upgrade_socket`).
//!
//! 1. The successor (`outpost run --upgrade`) connects and sends [`HELLO`].
//! 2. The running process answers with a manifest (the configured address
//!    of each socket) and the sockets themselves, as `SCM_RIGHTS`.
//! 3. The successor builds everything, serves on those sockets (both
//!    processes accept from the same queues meanwhile, so no connection is
//!    refused), binds the Unix socket for the next upgrade, and sends
//!    [`READY`].
//! 4. The running process drains as on SIGTERM and exits.
//!
//! If the successor fails before step 3, the running process never hears
//! `READY` and keeps serving.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What a successor says first.
const HELLO: &[u8] = b"OUTPOST-UPGRADE 1\n";
/// What a successor says once it serves.
const READY: &[u8] = b"READY\n";
/// More sockets than any config has; bounds what a successor accepts.
const MAX_SOCKETS: usize = 256;
/// Largest manifest accepted.
const MAX_MANIFEST: usize = 64 * 1024;
/// How long each side waits on the other during the exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the running process waits for a successor to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Listening sockets by the address the config gave them (port 0 stays 0:
/// a successor with the same config finds the same socket).
#[derive(Debug, Default)]
pub struct Sockets {
    pub listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    pub admin: Option<(SocketAddr, std::net::TcpListener)>,
    /// The UDP sockets of listeners with QUIC, by their TCP listener's
    /// configured address.
    pub quic: Vec<(SocketAddr, std::net::UdpSocket)>,
}

impl Sockets {
    /// Takes the first socket configured as `addr`, if one was handed over.
    pub fn take_listener(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        let at = self.listeners.iter().position(|(a, _)| *a == addr)?;
        Some(self.listeners.remove(at).1)
    }

    /// Takes the QUIC socket of the listener configured as `addr`.
    pub fn take_quic(&mut self, addr: SocketAddr) -> Option<std::net::UdpSocket> {
        let at = self.quic.iter().position(|(a, _)| *a == addr)?;
        Some(self.quic.remove(at).1)
    }

    pub fn take_admin(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        match self.admin.take() {
            Some((configured, socket)) if configured == addr => Some(socket),
            other => {
                self.admin = other;
                None
            }
        }
    }

    /// Duplicates every descriptor (each copy closes on exec).
    pub fn try_clone(&self) -> io::Result<Sockets> {
        Ok(Sockets {
            listeners: self
                .listeners
                .iter()
                .map(|(a, l)| Ok((*a, l.try_clone()?)))
                .collect::<io::Result<_>>()?,
            admin: match &self.admin {
                Some((a, l)) => Some((*a, l.try_clone()?)),
                None => None,
            },
            quic: self
                .quic
                .iter()
                .map(|(a, s)| Ok((*a, s.try_clone()?)))
                .collect::<io::Result<_>>()?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Configured address of each listener, in the order of the sockets.
    listeners: Vec<SocketAddr>,
    /// Configured address of the side API's socket, which comes after the
    /// listeners'.
    admin: Option<SocketAddr>,
    /// Configured address of each listener whose QUIC socket comes last,
    /// in order (absent from a predecessor without QUIC).
    #[serde(default)]
    quic: Vec<SocketAddr>,
    pid: u32,
}

/// The successor's end of the exchange, kept until it serves.
pub struct Handshake {
    stream: UnixStream,
    /// The process that handed the sockets over.
    pub from_pid: u32,
}

impl Handshake {
    /// Tells the old process that the successor serves: it drains and exits.
    pub fn ready(mut self) -> io::Result<()> {
        self.stream.write_all(READY)
    }
}

/// Successor side: asks the process listening on `path` for its sockets.
/// Blocking; call it before the runtime is busy or on a blocking thread.
pub fn request(path: &Path) -> io::Result<(Sockets, Handshake)> {
    let stream = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "no running outpost answers on {} to hand over its sockets: {e}",
                path.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    (&stream).write_all(HELLO)?;

    let mut buf = vec![0u8; MAX_MANIFEST + 4];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let mut have = received.bytes;
    if have < 4 {
        (&stream).read_exact(&mut buf[have..4])?;
        have = 4;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_MANIFEST {
        return Err(invalid(format!("a manifest of {len} bytes")));
    }
    if have < 4 + len {
        (&stream).read_exact(&mut buf[have..4 + len])?;
    }
    let manifest: Manifest = serde_json::from_slice(&buf[4..4 + len])
        .map_err(|e| invalid(format!("a bad manifest: {e}")))?;
    let expected =
        manifest.listeners.len() + usize::from(manifest.admin.is_some()) + manifest.quic.len();
    if fds.len() != expected {
        return Err(invalid(format!(
            "{} sockets where the manifest names {expected}",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let mut sockets = Sockets::default();
    for addr in manifest.listeners {
        if let Some(socket) = fds.next() {
            sockets.listeners.push((addr, socket.into()));
        }
    }
    if let Some(addr) = manifest.admin
        && let Some(socket) = fds.next()
    {
        sockets.admin = Some((addr, socket.into()));
    }
    for addr in manifest.quic {
        if let Some(socket) = fds.next() {
            sockets.quic.push((addr, socket.into()));
        }
    }
    Ok((
        sockets,
        Handshake {
            stream,
            from_pid: manifest.pid,
        },
    ))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("the running process sent {what}"),
    )
}

/// Running side: answers successors on `path` until one is ready; then
/// `handed_over` is notified and the caller drains. `replace`: unlink a
/// socket file that another process (the predecessor) still listens on.
pub async fn serve(path: PathBuf, sockets: Sockets, replace: bool) -> io::Result<Arc<Notify>> {
    let listener = bind(&path, replace)?;
    let handed_over = Arc::new(Notify::new());
    let done = handed_over.clone();
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "upgrade socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let copies = match sockets.try_clone() {
                Ok(copies) => copies,
                Err(e) => {
                    tracing::error!(error = %e, "cannot duplicate the listening sockets for an upgrade");
                    continue;
                }
            };
            let exchange = tokio::task::spawn_blocking(move || {
                let stream = stream.into_std()?;
                stream.set_nonblocking(false)?;
                hand_over(stream, copies)
            });
            match exchange.await {
                Ok(Ok(())) => {
                    tracing::info!("the successor serves; draining");
                    done.notify_one();
                    break;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upgrade abandoned; this process keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "upgrade exchange failed"),
            }
        }
    });
    Ok(handed_over)
}

/// One exchange with a successor; Ok once it says it serves.
fn hand_over(stream: UnixStream, sockets: Sockets) -> io::Result<()> {
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    let mut hello = [0u8; HELLO.len()];
    (&stream).read_exact(&mut hello)?;
    if hello != HELLO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer on the upgrade socket is not an outpost successor",
        ));
    }
    let manifest = Manifest {
        listeners: sockets.listeners.iter().map(|(a, _)| *a).collect(),
        admin: sockets.admin.as_ref().map(|(a, _)| *a),
        quic: sockets.quic.iter().map(|(a, _)| *a).collect(),
        pid: std::process::id(),
    };
    let json = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(io::Error::other)?;
    let mut payload = len.to_be_bytes().to_vec();
    payload.extend_from_slice(&json);
    let fds: Vec<_> = sockets
        .listeners
        .iter()
        .map(|(_, l)| l.as_fd())
        .chain(sockets.admin.as_ref().map(|(_, l)| l.as_fd()))
        .chain(sockets.quic.iter().map(|(_, s)| s.as_fd()))
        .collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("the sockets do not fit one message"));
    }
    let sent = rustix::net::sendmsg(
        &stream,
        &[IoSlice::new(&payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    (&stream).write_all(&payload[sent..])?;
    // The sockets are the successor's now too; ours stay open until we exit.
    drop(sockets);
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut ready = [0u8; READY.len()];
    (&stream).read_exact(&mut ready).map_err(|e| {
        io::Error::new(e.kind(), format!("the successor never said it serves: {e}"))
    })?;
    if ready != READY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the successor sent something other than READY",
        ));
    }
    Ok(())
}

/// Binds the upgrade socket. A file left by a process that died is
/// replaced; one that a live process answers on is an error unless
/// `replace` (a successor taking over from it).
fn bind(path: &Path, replace: bool) -> io::Result<tokio::net::UnixListener> {
    let listener = bind_replacing(path, replace)?;
    // Whoever can connect gets the listening sockets: the owner only.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn bind_replacing(path: &Path, replace: bool) -> io::Result<tokio::net::UnixListener> {
    match tokio::net::UnixListener::bind(path) {
        Ok(listener) => return Ok(listener),
        Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot bind the upgrade socket {}: {e}", path.display()),
            ));
        }
        Err(_) => {}
    }
    if !replace && UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another outpost answers on {}; take over from it with `outpost run --upgrade`",
                path.display()
            ),
        ));
    }
    std::fs::remove_file(path)?;
    tokio::net::UnixListener::bind(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two listening sockets, the side API's and a QUIC socket pass from
    /// one end to the other, keep their configured addresses, and still
    /// accept (or receive).
    #[tokio::test]
    async fn sockets_pass_over_the_upgrade_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bound_b = b.local_addr().unwrap();
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let bound_udp = udp.local_addr().unwrap();
        let sockets = Sockets {
            listeners: vec![(zero, a), (other, b)],
            admin: Some((zero, admin)),
            quic: vec![(other, udp)],
        };
        let handed_over = serve(path.clone(), sockets, false).await.unwrap();

        let request_path = path.clone();
        let (mut got, handshake) = tokio::task::spawn_blocking(move || request(&request_path))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(handshake.from_pid, std::process::id());
        let b = got.take_listener(other).expect("the second listener");
        assert_eq!(b.local_addr().unwrap(), bound_b);
        assert!(got.take_listener(zero).is_some());
        assert!(got.take_listener(zero).is_none());
        assert!(got.take_admin(other).is_none());
        assert!(got.take_admin(zero).is_some());
        assert!(got.take_quic(zero).is_none());
        let udp = got.take_quic(other).expect("the QUIC socket");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"datagram", bound_udp).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"datagram");

        // The received socket accepts connections made to the old one.
        let client = std::net::TcpStream::connect(bound_b).unwrap();
        let (accepted, _) = b.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());

        handshake.ready().unwrap();
        tokio::time::timeout(Duration::from_secs(10), handed_over.notified())
            .await
            .expect("the running side heard READY");
    }

    /// A peer that is not a successor gets nothing, and the running side
    /// keeps answering.
    #[tokio::test]
    async fn a_stranger_on_the_socket_gets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sockets = Sockets {
            listeners: vec![(zero, listener)],
            admin: None,
            quic: Vec::new(),
        };
        serve(path.clone(), sockets, false).await.unwrap();
        let stranger_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let mut stream = UnixStream::connect(&stranger_path).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).map(|_| buf)
        })
        .await
        .unwrap();
        assert!(answer.is_err() || answer.unwrap().is_empty());
        let (got, _) = tokio::task::spawn_blocking(move || request(&path))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.listeners.len(), 1);
    }

    /// A file left by a dead process is replaced; a live one is refused.
    #[tokio::test]
    async fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upgrade.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = bind(&path, false).expect("stale file replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may connect");
        let err = bind(&path, false).unwrap_err();
        assert!(err.to_string().contains("--upgrade"), "{err}");
        drop(live);
    }
}
