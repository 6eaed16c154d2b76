//! Fault-injecting TCP proxies for the node-to-node links of a `licensed` cluster.
//!
//! The kernel the suite runs on has no `tc netem`, so network faults are injected in user
//! space: every directed link *i → j* gets its own [`LinkProxy`], and node *i* is started
//! with `--peer-route j=PROXY` so that every connection it opens to *j* goes through that
//! proxy. [`ProxyMesh`] builds and drives the proxies of a whole cluster.
//!
//! # One link, two directions
//!
//! Node-to-node traffic is HTTP: the node that dials sends a request and reads the answer
//! on the same TCP connection. So link *i → j* carries *i*'s requests to *j*
//! ([`Direction::ToTarget`]) **and** *j*'s answers to *i* ([`Direction::FromTarget`]).
//! The link *j → i* is a separate proxy carrying *j*'s requests and *i*'s answers.
//!
//! # Faults at the Raft level
//!
//! | [`Fault`] on *i → j*   | what Raft sees                                                    |
//! |------------------------|-------------------------------------------------------------------|
//! | `None`                 | a healthy link                                                    |
//! | `Blackhole`            | a partition: *i*'s AppendEntries/votes to *j* time out            |
//! | `Refuse`               | *j* looks crashed to *i*: connects fail, replication backs off    |
//! | `Reset`                | connections die right after they open: every RPC fails at once   |
//! | `OneWay(ToTarget)`     | *j* never receives *i*'s RPCs; *i*'s RPCs time out                |
//! | `OneWay(FromTarget)`   | *j* receives and applies *i*'s RPCs, *i* never hears the answers  |
//! | `Delay`                | a slow or distant peer; enough delay provokes elections           |
//! | `Drop`                 | a flaky link: a share of connections and RPCs fail with a reset   |
//!
//! # Why "drop" kills connections
//!
//! TCP cannot lose bytes silently: if the proxy skipped a chunk in the middle of a stream,
//! the peer would read a corrupted HTTP message, which no real network produces. A lost
//! packet on a real link either gets retransmitted (seen as delay) or ends the connection.
//! So [`Fault::Drop`] resets: each new connection, and each chunk forwarded afterwards,
//! kills its connection with the given probability.
//!
//! # Healing
//!
//! Connections that lived through a byte-dropping fault (`Blackhole`, `OneWay`) have lost
//! bytes somewhere, or at least have requests that never got an answer. They are reset as
//! soon as the fault changes again, so clients reconnect instead of reading a desynchronised
//! stream. New connections follow the new fault at once.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Largest chunk read and forwarded at once. Faults are decided per chunk.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction of a delayed connection: enough to keep a snapshot
/// transfer streaming under delay, small enough to push back on a fast sender.
const QUEUE: usize = 64;
/// Upper bound for dialing the target. On loopback a connect either succeeds or is refused
/// at once; this only guards against a wedged target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before trying again to listen after `Refuse`, should the port be taken meanwhile.
const REBIND_RETRY: Duration = Duration::from_millis(50);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// A direction of the bytes of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the node that dialed to the target: the dialer's requests.
    ToTarget,
    /// From the target back to the node that dialed: the target's answers.
    FromTarget,
}

/// What a [`LinkProxy`] does to its traffic. Changeable at any time with
/// [`LinkProxy::set_fault`]; existing connections follow the change chunk by chunk.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fault {
    /// Pass everything through unchanged.
    #[default]
    None,
    /// A network partition. Connections are still accepted (the peer's kernel would have
    /// completed the handshake before the partition hit, or the packets just vanish), but no
    /// byte is forwarded in either direction: what arrives is read and discarded, so the
    /// peer's HTTP client waits until its own timeout instead of getting a clean error.
    /// A connection accepted under this fault never reaches the target at all.
    Blackhole,
    /// A crashed peer whose host is up: the proxy stops listening, so new connects get
    /// `ECONNREFUSED`, and open connections are reset.
    Refuse,
    /// Every open connection is reset and new connections are reset right after accept.
    /// Unlike [`Fault::Refuse`], dialing succeeds: the failure shows up on the first read or
    /// write.
    Reset,
    /// Bytes flowing in the `blocked` direction are discarded, the other direction passes.
    OneWay {
        /// The direction whose bytes are lost.
        blocked: Direction,
    },
    /// Every chunk is held back `base` plus a uniformly random share of `jitter`. Order
    /// within a connection is kept (a chunk never overtakes an earlier one), and chunks are
    /// pipelined: the delay adds latency, it does not cap throughput.
    Delay {
        /// Minimal added latency per chunk and direction.
        base: Duration,
        /// Largest extra latency on top of `base`.
        jitter: Duration,
    },
    /// Each new connection, and each chunk forwarded, resets its connection with this
    /// probability (0.0 to 1.0). See the module documentation for why bytes are never
    /// dropped silently.
    Drop {
        /// Chance per connection and per chunk.
        probability: f64,
    },
}

impl Fault {
    /// Whether bytes flowing in `direction` are discarded.
    fn blocks(&self, direction: Direction) -> bool {
        match self {
            Fault::Blackhole => true,
            Fault::OneWay { blocked } => *blocked == direction,
            _ => false,
        }
    }

    /// Whether the fault discards bytes in some direction: connections that live through
    /// it are reset when the fault changes.
    fn loses_bytes(&self) -> bool {
        matches!(self, Fault::Blackhole | Fault::OneWay { .. })
    }

    /// Whether open connections must be reset as soon as the fault is set.
    fn kills_connections(&self) -> bool {
        matches!(self, Fault::Reset | Fault::Refuse)
    }

    /// Rolls the dice of [`Fault::Drop`]; false for every other fault.
    fn roll_drop(&self) -> bool {
        match self {
            // `random::<f64>()` is in [0, 1): probability 0 (or NaN) never fires, 1 always.
            Fault::Drop { probability } => rand::random::<f64>() < *probability,
            _ => false,
        }
    }

    /// The latency to add to one chunk.
    fn sample_delay(&self) -> Duration {
        match self {
            Fault::Delay { base, jitter } => *base + jitter.mul_f64(rand::random::<f64>()),
            _ => Duration::ZERO,
        }
    }
}

/// Counters of a [`LinkProxy`] since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections currently open.
    pub active: u64,
    /// Bytes delivered to the target.
    pub bytes_to_target: u64,
    /// Bytes delivered back to the dialer.
    pub bytes_from_target: u64,
    /// Bytes read and thrown away by `Blackhole` and `OneWay`.
    pub bytes_discarded: u64,
    /// Connections the proxy reset (`Reset`, `Refuse`, `Drop`, reset at heal, shutdown).
    pub resets: u64,
    /// Connections reset because the target could not be dialed (it is down).
    pub target_unreachable: u64,
    /// Chunks held back by [`Fault::Delay`].
    pub chunks_delayed: u64,
}

/// Live counters shared by the accept loop and the connections.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
    bytes_discarded: AtomicU64,
    resets: AtomicU64,
    target_unreachable: AtomicU64,
    chunks_delayed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn delivered(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToTarget => &self.bytes_to_target,
            Direction::FromTarget => &self.bytes_from_target,
        }
    }

    fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            bytes_to_target: self.bytes_to_target.load(Ordering::Relaxed),
            bytes_from_target: self.bytes_from_target.load(Ordering::Relaxed),
            bytes_discarded: self.bytes_discarded.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            target_unreachable: self.target_unreachable.load(Ordering::Relaxed),
            chunks_delayed: self.chunks_delayed.load(Ordering::Relaxed),
        }
    }
}

/// What every task of a proxy watches.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Control {
    fault: Fault,
    /// Bumped on every real change of `fault`, so a connection can tell "the fault it was
    /// blackholed under" from "a later fault", even when changes come faster than it looks.
    generation: u64,
    /// Set by shutdown: everything stops and open connections are reset.
    closed: bool,
}

/// A fault-injecting TCP proxy for one directed link: it listens on a loopback port and
/// forwards every accepted connection to `target`, applying the current [`Fault`].
///
/// Dropping the proxy stops it (like [`LinkProxy::shutdown`], without waiting).
#[derive(Debug)]
pub struct LinkProxy {
    listen_addr: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
}

impl LinkProxy {
    /// Starts a proxy to `target` on a free loopback port, passing traffic through.
    pub async fn start(target: SocketAddr) -> io::Result<LinkProxy> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let listen_addr = listener.local_addr()?;
        let (control, watcher) = watch::channel(Control {
            fault: Fault::None,
            generation: 0,
            closed: false,
        });
        let counters = Arc::new(Counters::default());
        tokio::spawn(accept_loop(
            listener,
            listen_addr,
            target,
            watcher,
            counters.clone(),
        ));
        Ok(LinkProxy {
            listen_addr,
            target,
            control,
            counters,
        })
    }

    /// The address to dial instead of the target.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Changes the fault; open connections follow at their next chunk. Setting the fault
    /// that is already in force changes nothing (in particular it resets nothing).
    pub fn set_fault(&self, fault: Fault) {
        self.control.send_if_modified(|control| {
            if control.fault == fault {
                return false;
            }
            control.fault = fault;
            control.generation += 1;
            true
        });
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.control.borrow().fault
    }

    /// Counters since the start.
    pub fn stats(&self) -> ProxyStats {
        self.counters.snapshot()
    }

    /// Stops listening, resets every open connection and waits until all of them are gone.
    pub async fn shutdown(&self) {
        self.control.send_modify(|control| control.closed = true);
        // Every task holds a receiver; the last one to finish closes the channel.
        self.control.closed().await;
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.control.send_modify(|control| control.closed = true);
    }
}

/// Accepts connections and hands each to its own task; stops listening under `Refuse`.
async fn accept_loop(
    listener: TcpListener,
    listen_addr: SocketAddr,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    let mut listener = Some(listener);
    loop {
        let state = *control.borrow_and_update();
        if state.closed {
            return;
        }
        if state.fault == Fault::Refuse {
            // Closing the listening socket is what makes the kernel answer with a refusal.
            listener = None;
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        if listener.is_none() {
            match TcpListener::bind(listen_addr).await {
                Ok(bound) => listener = Some(bound),
                Err(e) => {
                    tracing::warn!(%listen_addr, error = %e, "proxy cannot listen again; retrying");
                    wait_or_change(&mut control, REBIND_RETRY).await;
                    continue;
                }
            }
        }
        let Some(bound) = listener.as_ref() else {
            continue;
        };
        tokio::select! {
            accepted = bound.accept() => match accepted {
                Ok((stream, _)) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve_connection(
                        stream,
                        target,
                        control.clone(),
                        counters.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%listen_addr, error = %e, "proxy accept failed");
                    wait_or_change(&mut control, ACCEPT_RETRY).await;
                }
            },
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sleeps for `pause`, or less if the control changes meanwhile.
async fn wait_or_change(control: &mut watch::Receiver<Control>, pause: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = control.changed() => {}
    }
}

/// How a proxied connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides closed in an orderly way.
    Closed,
    /// The proxy kills the connection (a fault, a heal after lost bytes, shutdown).
    Kill,
    /// A socket failed; the other side is reset so it sees an error too.
    Failed,
}

/// Decrements the open-connection counter however the connection task ends.
struct ActiveGuard(Arc<Counters>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Marks a connection that lived through a byte-dropping fault; it must die at the next
/// change of the fault.
#[derive(Debug, Default)]
struct Taint(AtomicU64);

impl Taint {
    /// Records that the connection lost (or may have lost) bytes during `generation`.
    /// The first generation sticks.
    fn mark(&self, generation: u64) {
        let _ = self
            .0
            .compare_exchange(0, generation + 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the connection is tainted and the fault has changed since.
    fn doomed(&self, generation: u64) -> bool {
        let tainted = self.0.load(Ordering::Relaxed);
        tainted != 0 && tainted != generation + 1
    }
}

/// Everything a connection's pumps share.
struct Link<'a> {
    counters: &'a Counters,
    taint: &'a Taint,
}

/// Resets a socket: `SO_LINGER` 0 makes the close send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn serve_connection(
    mut client: TcpStream,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(counters.clone());
    let _ = client.set_nodelay(true);

    let state = *control.borrow_and_update();
    if state.closed || state.fault.kills_connections() || state.fault.roll_drop() {
        counters.resets.fetch_add(1, Ordering::Relaxed);
        reset(&client);
        return;
    }
    if state.fault == Fault::Blackhole {
        // The target must not even see a connection opened during a partition.
        if hold(&mut client, &mut control, &counters).await != End::Closed {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            reset(&client);
        }
        return;
    }

    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(server)) => server,
        _ => {
            // The target is down: the dialer sees its connection die, as close to a
            // refusal as a proxy that has already accepted can get.
            counters.target_unreachable.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
    };
    let _ = server.set_nodelay(true);

    let taint = Taint::default();
    let link = Link {
        counters: &counters,
        taint: &taint,
    };
    let end = relay(&mut client, &mut server, &mut control, &link).await;
    if end != End::Closed {
        if end == End::Kill {
            counters.resets.fetch_add(1, Ordering::Relaxed);
        }
        reset(&client);
        reset(&server);
    }
}

/// A connection accepted during a blackhole, with no target behind it: read and discard
/// until the dialer gives up, or until the fault changes (the caller then resets it).
async fn hold(
    client: &mut TcpStream,
    control: &mut watch::Receiver<Control>,
    counters: &Counters,
) -> End {
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) => return End::Closed,
                Ok(n) => Counters::add(&counters.bytes_discarded, n),
                Err(_) => return End::Failed,
            },
            _ = control.changed() => return End::Kill,
        }
    }
}

/// Copies both directions of a connection until both sides have closed or the proxy
/// kills the connection.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    control: &mut watch::Receiver<Control>,
    link: &Link<'_>,
) -> End {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = pump(
        client_read,
        server_write,
        Direction::ToTarget,
        control.clone(),
        link,
    );
    let down = pump(
        server_read,
        client_write,
        Direction::FromTarget,
        control.clone(),
        link,
    );
    let faults = watch_faults(control, link.taint);
    tokio::pin!(up, down, faults);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            result = &mut up, if !up_done => match result {
                Ok(()) => up_done = true,
                Err(end) => return end,
            },
            result = &mut down, if !down_done => match result {
                Ok(()) => down_done = true,
                Err(end) => return end,
            },
            end = &mut faults => return end,
        }
        if up_done && down_done {
            return End::Closed;
        }
    }
}

/// Follows fault changes for one connection: returns when the connection must be killed.
async fn watch_faults(control: &mut watch::Receiver<Control>, taint: &Taint) -> End {
    loop {
        let state = *control.borrow_and_update();
        if state.closed || state.fault.kills_connections() || taint.doomed(state.generation) {
            return End::Kill;
        }
        if state.fault.loses_bytes() {
            // Even an idle connection is doomed: it may carry a request whose answer
            // was lost, and the heal must leave no half-dead connection behind.
            taint.mark(state.generation);
        }
        if control.changed().await.is_err() {
            return End::Kill;
        }
    }
}

/// One direction of a connection: a reader that applies the fault to each chunk and a
/// writer that delivers chunks when their delay is over. The queue between them keeps
/// chunks in order and lets delayed chunks travel pipelined.
async fn pump(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    direction: Direction,
    control: watch::Receiver<Control>,
    link: &Link<'_>,
) -> Result<(), End> {
    let (queue, queued) = mpsc::channel(QUEUE);
    tokio::try_join!(
        read_side(from, queue, direction, control.clone(), link),
        write_side(to, queued, direction, control, link),
    )
    .map(|_| ())
}

/// A chunk and the moment it may be delivered.
type Chunk = (Instant, Vec<u8>);

async fn read_side(
    mut from: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    direction: Direction,
    control: watch::Receiver<Control>,
    link: &Link<'_>,
) -> Result<(), End> {
    let mut buf = vec![0u8; CHUNK];
    // Deliveries never go back in time, so jitter cannot reorder chunks.
    let mut not_before = Instant::now();
    loop {
        let n = from.read(&mut buf).await.map_err(|_| End::Failed)?;
        if n == 0 {
            // End of stream: dropping the queue lets the writer finish and half-close.
            return Ok(());
        }
        let state = *control.borrow();
        if state.closed || state.fault.kills_connections() || state.fault.roll_drop() {
            return Err(End::Kill);
        }
        if discards(&state, direction, link, n) {
            continue;
        }
        let delay = state.fault.sample_delay();
        if !delay.is_zero() {
            link.counters.chunks_delayed.fetch_add(1, Ordering::Relaxed);
        }
        let deadline = (Instant::now() + delay).max(not_before);
        not_before = deadline;
        if queue.send((deadline, buf[..n].to_vec())).await.is_err() {
            return Ok(());
        }
    }
}

async fn write_side(
    mut to: WriteHalf<'_>,
    mut queued: mpsc::Receiver<Chunk>,
    direction: Direction,
    control: watch::Receiver<Control>,
    link: &Link<'_>,
) -> Result<(), End> {
    while let Some((deadline, chunk)) = queued.recv().await {
        // Sleeping on a deadline already past would still cost a timer tick.
        if deadline > Instant::now() {
            tokio::time::sleep_until(deadline).await;
        }
        // The fault may have changed while the chunk waited.
        let state = *control.borrow();
        if discards(&state, direction, link, chunk.len()) {
            continue;
        }
        to.write_all(&chunk).await.map_err(|_| End::Failed)?;
        Counters::add(link.counters.delivered(direction), chunk.len());
    }
    // The sender closed its side: pass the half-close on.
    let _ = to.shutdown().await;
    Ok(())
}

/// Whether `n` bytes flowing in `direction` must be thrown away; counts them if so.
fn discards(state: &Control, direction: Direction, link: &Link<'_>, n: usize) -> bool {
    if state.fault.blocks(direction) {
        link.taint.mark(state.generation);
    } else if !link.taint.doomed(state.generation) {
        return false;
    }
    // Blocked now, or blocked before and about to be reset: forwarding would hand the
    // other side a stream with a hole in it.
    Counters::add(&link.counters.bytes_discarded, n);
    true
}

/// Proxies for every directed link between the nodes of a cluster, and the usual network
/// faults expressed on them.
///
/// Node *i* must be started with the routes of [`ProxyMesh::route_for`]`(i)` (see
/// [`ProxyMesh::route_args`]); then all Raft traffic between nodes crosses the mesh.
#[derive(Debug, Default)]
pub struct ProxyMesh {
    /// Node id → real Raft address.
    nodes: BTreeMap<u64, SocketAddr>,
    /// (from, to) → the proxy `from` dials to reach `to`.
    links: BTreeMap<(u64, u64), LinkProxy>,
}

impl ProxyMesh {
    /// Builds proxies for every ordered pair of the given nodes (id, real Raft address).
    pub async fn start(nodes: impl IntoIterator<Item = (u64, SocketAddr)>) -> io::Result<Self> {
        let mut mesh = ProxyMesh::default();
        for (id, raft_addr) in nodes {
            mesh.add_node(id, raft_addr).await?;
        }
        Ok(mesh)
    }

    /// Adds a node (e.g. one about to join) with proxies to and from every known node.
    /// Its links start healthy whatever the faults elsewhere. Nodes already running keep
    /// dialing it directly until restarted with their new [`ProxyMesh::route_for`].
    pub async fn add_node(&mut self, id: u64, raft_addr: SocketAddr) -> io::Result<()> {
        if self.nodes.contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("node {id} is already in the mesh"),
            ));
        }
        for (&other, &other_addr) in &self.nodes {
            let outgoing = LinkProxy::start(other_addr).await?;
            let incoming = LinkProxy::start(raft_addr).await?;
            self.links.insert((id, other), outgoing);
            self.links.insert((other, id), incoming);
        }
        self.nodes.insert(id, raft_addr);
        Ok(())
    }

    /// The node ids in the mesh.
    pub fn nodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.keys().copied()
    }

    /// The proxy `from` dials to reach `to`.
    pub fn link(&self, from: u64, to: u64) -> Option<&LinkProxy> {
        self.links.get(&(from, to))
    }

    /// Every link as ((from, to), proxy).
    pub fn links(&self) -> impl Iterator<Item = ((u64, u64), &LinkProxy)> + '_ {
        self.links.iter().map(|(pair, proxy)| (*pair, proxy))
    }

    /// Where node `from` must send its traffic for each peer: (peer id, proxy address).
    pub fn route_for(&self, from: u64) -> Vec<(u64, SocketAddr)> {
        self.links
            .iter()
            .filter(|((source, _), _)| *source == from)
            .map(|((_, to), proxy)| (*to, proxy.listen_addr()))
            .collect()
    }

    /// [`ProxyMesh::route_for`] as command-line flags: `--peer-route TO=ADDR` per peer.
    pub fn route_args(&self, from: u64) -> Vec<String> {
        self.route_for(from)
            .into_iter()
            .flat_map(|(to, addr)| ["--peer-route".to_string(), format!("{to}={addr}")])
            .collect()
    }

    /// Sets the fault of one link; returns false if there is no such link.
    pub fn set_link(&self, from: u64, to: u64, fault: Fault) -> bool {
        match self.link(from, to) {
            Some(proxy) => {
                proxy.set_fault(fault);
                true
            }
            None => false,
        }
    }

    /// Sets the fault of every link into and out of `node` (e.g. a slow node with
    /// [`Fault::Delay`]); other links are left alone.
    pub fn set_around(&self, node: u64, fault: Fault) {
        for ((from, to), proxy) in &self.links {
            if *from == node || *to == node {
                proxy.set_fault(fault);
            }
        }
    }

    /// Cuts `node` off from every other node (both directions); other links are left
    /// alone. At the Raft level the node can neither commit nor vote: if it led, the
    /// others elect a new leader once their election timeout passes; whatever it
    /// appended meanwhile stays uncommitted and is overwritten after the heal.
    pub fn isolate(&self, node: u64) {
        self.set_around(node, Fault::Blackhole);
    }

    /// Splits the cluster: links within a group pass, links between groups are
    /// blackholed. A node in no group is alone in its own. Replaces every link's fault.
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let group_of: BTreeMap<u64, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(index, group)| group.iter().map(move |node| (*node, index)))
            .collect();
        let same_group = |a: u64, b: u64| match (group_of.get(&a), group_of.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
        for ((from, to), proxy) in &self.links {
            proxy.set_fault(if same_group(*from, *to) {
                Fault::None
            } else {
                Fault::Blackhole
            });
        }
    }

    /// No byte from `from` reaches `to`, while `to`'s bytes still reach `from`: `from`'s
    /// requests to `to` are lost, and so are its answers to `to`'s requests. At the Raft
    /// level `from` still hears `to` (heartbeats, vote requests) and acts on it, but `to`
    /// never learns of it and sees `from` as unresponsive. Only these two links change.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.set_link(
            from,
            to,
            Fault::OneWay {
                blocked: Direction::ToTarget,
            },
        );
        self.set_link(
            to,
            from,
            Fault::OneWay {
                blocked: Direction::FromTarget,
            },
        );
    }

    /// Sets the same fault on every link.
    pub fn set_all(&self, fault: Fault) {
        for proxy in self.links.values() {
            proxy.set_fault(fault);
        }
    }

    /// Removes every fault. Connections that lost bytes are reset so nodes reconnect.
    pub fn heal(&self) {
        self.set_all(Fault::None);
    }

    /// The fault of every link.
    pub fn faults(&self) -> BTreeMap<(u64, u64), Fault> {
        self.links
            .iter()
            .map(|(pair, proxy)| (*pair, proxy.fault()))
            .collect()
    }

    /// The counters of every link.
    pub fn stats(&self) -> BTreeMap<(u64, u64), ProxyStats> {
        self.links
            .iter()
            .map(|(pair, proxy)| (*pair, proxy.stats()))
            .collect()
    }

    /// Stops every proxy and waits until their connections are gone.
    pub async fn shutdown(&self) {
        futures::future::join_all(self.links.values().map(LinkProxy::shutdown)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long a read must stay silent to count as "timed out".
    const SILENCE: Duration = Duration::from_millis(300);
    /// Generous bound for things that should happen promptly.
    const PROMPTLY: Duration = Duration::from_secs(3);

    /// An echo server on a free port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    /// A server that greets every connection with `hello` and reports what it receives.
    async fn greeting_server() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (report, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let report = report.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(b"hello").await;
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        let _ = report.send(buf[..n].to_vec());
                    }
                });
            }
        });
        (addr, received)
    }

    /// Writes `message` and reads as many bytes back, failing after `within`.
    async fn round_trip(
        stream: &mut TcpStream,
        message: &[u8],
        within: Duration,
    ) -> io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0u8; message.len()];
        tokio::time::timeout(within, stream.read_exact(&mut answer))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(answer)
    }

    /// Whether the proxy killed the connection: a read ends (EOF or error) promptly.
    async fn is_closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(PROMPTLY, stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// Polls `condition` until it holds or [`PROMPTLY`] passes.
    async fn eventually<F, Fut>(mut condition: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + PROMPTLY;
        while Instant::now() < deadline {
            if condition().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn passes_traffic_through() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let answer = round_trip(&mut stream, b"ping", PROMPTLY).await.unwrap();
        assert_eq!(answer, b"ping");

        // A large transfer arrives whole and in order.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let answer = round_trip(&mut stream, &big, PROMPTLY).await.unwrap();
        assert_eq!(answer, big);

        let stats = proxy.stats();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.active, 1);
        assert_eq!(stats.bytes_to_target, 4 + big.len() as u64);
        assert_eq!(stats.bytes_from_target, 4 + big.len() as u64);
        assert_eq!(stats.resets, 0);
    }

    #[tokio::test]
    async fn half_close_is_forwarded() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        stream.write_all(b"last words").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PROMPTLY, stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer, b"last words");
        assert!(eventually(|| async { proxy.stats().active == 0 }).await);
    }

    #[tokio::test]
    async fn blackhole_silences_open_and_new_connections() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        round_trip(&mut open, b"before", PROMPTLY).await.unwrap();

        proxy.set_fault(Fault::Blackhole);
        assert_eq!(proxy.fault(), Fault::Blackhole);
        let err = round_trip(&mut open, b"during", SILENCE).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // New connections are accepted, but nothing comes back.
        let mut new = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let err = round_trip(&mut new, b"hello?", SILENCE).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(proxy.stats().bytes_discarded >= 12);
    }

    #[tokio::test]
    async fn heal_resets_blackholed_connections_and_restores_traffic() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        round_trip(&mut open, b"before", PROMPTLY).await.unwrap();
        proxy.set_fault(Fault::Blackhole);
        let mut accepted_during = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        round_trip(&mut open, b"lost", SILENCE).await.unwrap_err();

        proxy.set_fault(Fault::None);
        // Both saw bytes vanish: they are reset rather than left desynchronised.
        assert!(is_closed(&mut open).await);
        assert!(is_closed(&mut accepted_during).await);
        let mut fresh = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut fresh, b"after", PROMPTLY).await.unwrap(),
            b"after"
        );
        assert!(proxy.stats().resets >= 2);
    }

    #[tokio::test]
    async fn delay_adds_latency_and_keeps_order() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        proxy.set_fault(Fault::Delay {
            base: Duration::from_millis(100),
            jitter: Duration::ZERO,
        });
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let started = Instant::now();
        round_trip(&mut stream, b"slow", PROMPTLY).await.unwrap();
        // Delayed on the way there and on the way back.
        assert!(started.elapsed() >= Duration::from_millis(200));

        proxy.set_fault(Fault::Delay {
            base: Duration::from_millis(1),
            jitter: Duration::from_millis(20),
        });
        let mut sent = Vec::new();
        for i in 0..100u32 {
            let message = format!("<{i}>");
            stream.write_all(message.as_bytes()).await.unwrap();
            sent.extend_from_slice(message.as_bytes());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut received = vec![0u8; sent.len()];
        tokio::time::timeout(PROMPTLY, stream.read_exact(&mut received))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(received, sent);
    }

    #[tokio::test]
    async fn reset_kills_open_and_new_connections() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        round_trip(&mut open, b"before", PROMPTLY).await.unwrap();

        proxy.set_fault(Fault::Reset);
        assert!(is_closed(&mut open).await);
        // Dialing works, the connection dies right away.
        let mut new = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert!(is_closed(&mut new).await);
        assert!(proxy.stats().resets >= 2);

        proxy.set_fault(Fault::None);
        let mut fresh = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut fresh, b"back", PROMPTLY).await.unwrap(),
            b"back"
        );
    }

    #[tokio::test]
    async fn refuse_stops_listening_until_healed() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let addr = proxy.listen_addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        proxy.set_fault(Fault::Refuse);
        assert!(is_closed(&mut open).await);
        assert!(
            eventually(|| async {
                matches!(
                    TcpStream::connect(addr).await,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
                )
            })
            .await
        );

        proxy.set_fault(Fault::None);
        assert!(eventually(|| async { TcpStream::connect(addr).await.is_ok() }).await);
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            round_trip(&mut fresh, b"up", PROMPTLY).await.unwrap(),
            b"up"
        );
    }

    #[tokio::test]
    async fn one_way_blocking_answers_lets_requests_through() {
        let (target, mut received) = greeting_server().await;
        let proxy = LinkProxy::start(target).await.unwrap();
        proxy.set_fault(Fault::OneWay {
            blocked: Direction::FromTarget,
        });
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        stream.write_all(b"request").await.unwrap();
        let got = tokio::time::timeout(PROMPTLY, received.recv())
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"request"[..]));
        // The greeting never arrives.
        let mut greeting = [0u8; 5];
        assert!(
            tokio::time::timeout(SILENCE, stream.read_exact(&mut greeting))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn one_way_blocking_requests_lets_answers_through() {
        let (target, mut received) = greeting_server().await;
        let proxy = LinkProxy::start(target).await.unwrap();
        proxy.set_fault(Fault::OneWay {
            blocked: Direction::ToTarget,
        });
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        let mut greeting = [0u8; 5];
        tokio::time::timeout(PROMPTLY, stream.read_exact(&mut greeting))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&greeting, b"hello");
        stream.write_all(b"request").await.unwrap();
        assert!(tokio::time::timeout(SILENCE, received.recv())
            .await
            .is_err());

        // After the heal the connection that lost bytes is reset.
        proxy.set_fault(Fault::None);
        assert!(is_closed(&mut stream).await);
    }

    #[tokio::test]
    async fn drop_resets_with_the_given_probability() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        proxy.set_fault(Fault::Drop { probability: 1.0 });
        let mut doomed = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert!(is_closed(&mut doomed).await);

        proxy.set_fault(Fault::Drop { probability: 0.0 });
        let mut lucky = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut lucky, b"fine", PROMPTLY).await.unwrap(),
            b"fine"
        );

        // A chunk on an open connection can be the one that kills it.
        proxy.set_fault(Fault::Drop { probability: 1.0 });
        lucky.write_all(b"unlucky").await.unwrap();
        assert!(is_closed(&mut lucky).await);
    }

    #[tokio::test]
    async fn unreachable_target_resets_the_dialer() {
        // A port nobody listens on.
        let vacant = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = LinkProxy::start(vacant).await.unwrap();
        let mut stream = TcpStream::connect(proxy.listen_addr()).await.unwrap();
        assert!(is_closed(&mut stream).await);
        assert_eq!(proxy.stats().target_unreachable, 1);
    }

    #[tokio::test]
    async fn shutdown_closes_everything() {
        let proxy = LinkProxy::start(echo_server().await).await.unwrap();
        let addr = proxy.listen_addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        round_trip(&mut open, b"hi", PROMPTLY).await.unwrap();
        tokio::time::timeout(PROMPTLY, proxy.shutdown())
            .await
            .unwrap();
        assert!(is_closed(&mut open).await);
        assert!(TcpStream::connect(addr).await.is_err());
        assert_eq!(proxy.stats().active, 0);
    }

    #[tokio::test]
    async fn mesh_routes_and_faults() {
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            nodes.push((id, echo_server().await));
        }
        let mesh = ProxyMesh::start(nodes.clone()).await.unwrap();
        assert_eq!(mesh.nodes().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(mesh.links().count(), 6);

        let routes = mesh.route_for(1);
        assert_eq!(
            routes.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
            vec![2, 3]
        );
        for (to, addr) in &routes {
            let link = mesh.link(1, *to).unwrap();
            assert_eq!(link.listen_addr(), *addr);
            assert_eq!(link.target(), nodes[(*to - 1) as usize].1);
        }
        let args = mesh.route_args(1);
        assert_eq!(args.len(), 4);
        assert_eq!(args[0], "--peer-route");
        assert_eq!(args[1], format!("2={}", routes[0].1));

        // Traffic crosses the proxy.
        let mut stream = TcpStream::connect(routes[0].1).await.unwrap();
        round_trip(&mut stream, b"via", PROMPTLY).await.unwrap();
        assert_eq!(mesh.stats()[&(1, 2)].bytes_to_target, 3);

        mesh.partition(&[vec![1], vec![2, 3]]);
        let faults = mesh.faults();
        assert_eq!(faults[&(1, 2)], Fault::Blackhole);
        assert_eq!(faults[&(3, 1)], Fault::Blackhole);
        assert_eq!(faults[&(2, 3)], Fault::None);
        assert_eq!(faults[&(3, 2)], Fault::None);

        mesh.heal();
        mesh.cut_one_way(1, 2);
        let faults = mesh.faults();
        assert_eq!(
            faults[&(1, 2)],
            Fault::OneWay {
                blocked: Direction::ToTarget
            }
        );
        assert_eq!(
            faults[&(2, 1)],
            Fault::OneWay {
                blocked: Direction::FromTarget
            }
        );
        assert_eq!(faults[&(1, 3)], Fault::None);

        mesh.heal();
        mesh.isolate(3);
        let faults = mesh.faults();
        for ((from, to), fault) in &faults {
            let expected = if *from == 3 || *to == 3 {
                Fault::Blackhole
            } else {
                Fault::None
            };
            assert_eq!(*fault, expected, "link {from}->{to}");
        }

        // A node in no group is alone.
        mesh.partition(&[vec![1, 2]]);
        let faults = mesh.faults();
        assert_eq!(faults[&(1, 2)], Fault::None);
        assert_eq!(faults[&(1, 3)], Fault::Blackhole);

        assert!(!mesh.set_link(1, 1, Fault::Reset));
        mesh.set_all(Fault::Reset);
        assert!(mesh.faults().values().all(|fault| *fault == Fault::Reset));
        mesh.heal();
        assert!(mesh.faults().values().all(|fault| *fault == Fault::None));

        let mut mesh = mesh;
        mesh.add_node(4, echo_server().await).await.unwrap();
        assert_eq!(mesh.links().count(), 12);
        assert_eq!(mesh.route_for(4).len(), 3);
        assert!(mesh.add_node(4, nodes[0].1).await.is_err());
        tokio::time::timeout(PROMPTLY, mesh.shutdown())
            .await
            .unwrap();
    }
}
