//! A TCP proxy between workers and servers that breaks the connection on command.
//!
//! Fault tests and the chaos benchmark point workers at a [`Proxy`]'s address instead of
//! a server's, then make the network misbehave under them:
//!
//! - [`Proxy::cut`] closes every open connection at once (both sides see it end);
//! - [`Proxy::stall`] stops forwarding in both directions but keeps the sockets open, so
//!   neither side learns anything until a timeout of its own fires;
//! - [`Proxy::slow`] delays every chunk and caps its size (a slow, thin link);
//! - [`Proxy::refuse`] closes every new connection as soon as it is accepted;
//! - [`Proxy::set_upstreams`] switches the servers new connections go to; with several,
//!   they take turns (round robin), and an upstream that refuses the connection is skipped
//!   for the next one, so workers behind the proxy find a surviving replica by themselves;
//! - [`Proxy::resume`] forwards normally again (it ends stalling, slowness and refusal;
//!   cut connections stay cut, their peers reconnect).
//!
//! It is plain tokio: bytes are copied as they come, nothing of gRPC or HTTP/2 is
//! understood, so whatever a worker does on a real network it does here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the proxy treats the bytes of open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Copy as they come.
    Forward,
    /// Copy nothing; keep the sockets open.
    Stall,
    /// Copy at most `chunk` bytes at a time, each after `delay`.
    Slow {
        /// Wait before each chunk is passed on.
        delay: Duration,
        /// Largest chunk passed on at once.
        chunk: usize,
    },
}

/// The largest chunk copied at once when not slowed.
const CHUNK: usize = 64 * 1024;

struct Control {
    upstreams: Vec<SocketAddr>,
    next: usize,
    refuse: bool,
    /// Cancelled by [`Proxy::cut`]; every connection holds the one current at its accept.
    cut: CancellationToken,
}

struct Shared {
    control: Mutex<Control>,
    flow: watch::Sender<Flow>,
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
}

impl Shared {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        // A panic while the lock was held cannot leave `Control` half changed.
        self.control
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A proxy listening on 127.0.0.1; dropping it stops it and closes its connections.
pub struct Proxy {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://ADDR`, for a worker's `--server`.
    pub url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        Proxy::start_many(vec![upstream]).await
    }

    /// Starts a proxy whose new connections take turns among `upstreams`.
    pub async fn start_many(upstreams: Vec<SocketAddr>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (flow, _) = watch::channel(Flow::Forward);
        let shared = Arc::new(Shared {
            control: Mutex::new(Control {
                upstreams,
                next: 0,
                refuse: false,
                cut: CancellationToken::new(),
            }),
            flow,
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Proxy {
            addr,
            url: format!("http://{addr}"),
            shared,
            accept,
        })
    }

    /// Closes every open connection now. New ones are accepted as before.
    pub fn cut(&self) {
        let mut control = self.shared.control();
        let old = std::mem::replace(&mut control.cut, CancellationToken::new());
        old.cancel();
    }

    /// Stops forwarding on every connection, open or new, keeping the sockets open.
    pub fn stall(&self) {
        self.shared.flow.send_replace(Flow::Stall);
    }

    /// Passes on at most `chunk` bytes at a time (at least one), each after `delay`.
    pub fn slow(&self, delay: Duration, chunk: usize) {
        self.shared.flow.send_replace(Flow::Slow {
            delay,
            chunk: chunk.max(1),
        });
    }

    /// Closes every new connection as soon as it is accepted (open ones go on).
    pub fn refuse(&self) {
        self.shared.control().refuse = true;
    }

    /// Forwards normally again: no stall, no slowness, new connections accepted.
    pub fn resume(&self) {
        self.shared.control().refuse = false;
        self.shared.flow.send_replace(Flow::Forward);
    }

    /// New connections go to `upstreams` from now on, taking turns; open ones stay where
    /// they are (follow with [`Proxy::cut`] to move them).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        let mut control = self.shared.control();
        control.upstreams = upstreams;
        control.next = 0;
    }

    /// The upstreams new connections go to.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.shared.control().upstreams.clone()
    }

    /// How connections are treated now.
    pub fn flow(&self) -> Flow {
        *self.shared.flow.borrow()
    }

    /// Connections open now (accepted and connected upstream, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed at once because the proxy refused them or found no upstream.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Bytes passed on so far, both directions together.
    pub fn forwarded_bytes(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.control().cut.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or the like: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let (refuse, cut, upstreams, first) = {
            let mut control = shared.control();
            let first = control.next;
            control.next = control.next.wrapping_add(1);
            (
                control.refuse,
                control.cut.clone(),
                control.upstreams.clone(),
                first,
            )
        };
        if refuse {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        tokio::spawn(serve(client, upstreams, first, cut, Arc::clone(&shared)));
    }
}

/// Connects to the first upstream (from `first`, in turn) that accepts, then copies both
/// ways until either side closes or the connection is cut.
async fn serve(
    client: TcpStream,
    upstreams: Vec<SocketAddr>,
    first: usize,
    cut: CancellationToken,
    shared: Arc<Shared>,
) {
    let mut upstream = None;
    for i in 0..upstreams.len() {
        let addr = upstreams[(first + i) % upstreams.len()];
        let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr));
        if let Ok(Ok(stream)) = connect.await {
            upstream = Some(stream);
            break;
        }
    }
    let Some(upstream) = upstream else {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.open.fetch_add(1, Ordering::SeqCst);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let up = pump(client_read, upstream_write, &shared);
    let down = pump(upstream_read, client_write, &shared);
    tokio::select! {
        () = cut.cancelled() => {}
        // Either direction ending ends the connection: half-open connections only
        // confuse what a test is trying to show.
        () = up => {}
        () = down => {}
    }
    shared.open.fetch_sub(1, Ordering::SeqCst);
    // Both halves of both sockets drop here, which closes them.
}

/// Copies from `from` to `to` as the current [`Flow`] says, until either side fails.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
) {
    let mut flow = shared.flow.subscribe();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Read nothing while stalled, so the sender's own buffers fill as on a dead link.
        if wait_unstalled(&mut flow).await.is_err() {
            return;
        }
        let limit = match *flow.borrow() {
            Flow::Slow { chunk, .. } => chunk.min(CHUNK),
            _ => CHUNK,
        };
        let n = match from.read(&mut buf[..limit]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *flow.borrow();
        if let Flow::Slow { delay, .. } = current {
            tokio::time::sleep(delay).await;
        }
        // A stall that began while this chunk was read or held back holds it too.
        if wait_unstalled(&mut flow).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// Returns once the flow is not [`Flow::Stall`]; an error when the proxy is gone.
async fn wait_unstalled(flow: &mut watch::Receiver<Flow>) -> Result<(), watch::error::RecvError> {
    flow.wait_for(|f| *f != Flow::Stall).await.map(|_| ())
}
