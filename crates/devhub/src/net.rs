//! The glue between sockets and the [`Hub`]: bytes in, packets decoded, actions routed.
//!
//! Each connection task owns its socket and a queue of outbound frames; the shared
//! state routes [`Action`]s to those queues, to waiting method calls, and to event
//! listeners. The hub itself sits behind one mutex and is never held across an await.
//!
//! Limits, so that one bad client cannot hold devhub's memory or sockets (see [`Limits`]):
//! a connection must send CONNECT within 10 s of opening; one WebSocket message is at most
//! 512 KiB (IoT Hub's 256 KB message with its properties and the MQTT framing fits
//! easily); a device whose outbound queue holds more than 2 MiB it has not read, or that
//! takes no bytes for 10 s while devhub has some to send, is disconnected rather than
//! buffered without end; at most `max_connections` device
//! connections at once (further ones are refused with a log line).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use twinscope_proto::mqtt::{Decoder, Packet, PacketRef};

use crate::hub::{Action, ConnId, Hub};
use crate::store::EventRecord;

/// The limits devhub holds every connection to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// The largest WebSocket message (and frame) accepted.
    pub max_ws_message: usize,
    /// Bytes queued for a device that it has not read yet before it is disconnected.
    pub max_outbound_bytes: usize,
    /// How long one write may wait for the device to take bytes before it is
    /// disconnected (a device that stops reading also stops being read from: devhub
    /// decodes nothing more from it while its answers cannot be written).
    pub write_timeout: Duration,
    /// Device connections (WebSocket and MQTT/TLS) at once; TLS sockets on the HTTPS
    /// listener are capped at the same number.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            max_ws_message: 512 * 1024,
            max_outbound_bytes: 2 * 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            max_connections: 1000,
        }
    }
}

/// What a connection task is told to do, each not before the instant it carries (the
/// delay fault), in the order queued.
#[derive(Debug)]
enum Outbound {
    /// Write these bytes (one MQTT packet).
    Bytes(Vec<u8>, Option<Instant>),
    /// Close the socket.
    Close(Option<Instant>),
}

/// What the hub queued for one connection, shared by the hub's side ([`ConnHandle`]) and the
/// connection task ([`Conn`]): one allocation per connection. (A tokio mpsc channel
/// allocated a 32-slot block up front, 1.5 KB of every idle connection.)
struct Queue {
    items: Mutex<VecDeque<Outbound>>,
    /// Something was queued.
    ready: Notify,
    /// The connection must end (it stopped reading).
    kill: Notify,
    killed: AtomicBool,
    /// Bytes queued and not yet written.
    queued: AtomicUsize,
}

impl Queue {
    fn push(&self, o: Outbound) {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(o);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Outbound> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let o = items.pop_front();
        if items.is_empty() && items.capacity() > 16 {
            // A burst is over: an idle connection keeps no big queue.
            *items = VecDeque::new();
        }
        o
    }
}

/// The hub's side of one connection: its queue, the bytes waiting in it, and the switch
/// that ends it when it stops reading.
#[derive(Clone)]
struct ConnHandle(Arc<Queue>);

impl ConnHandle {
    /// Queues `bytes`, or ends the connection when its unread backlog would pass `max`.
    /// Returns true only for the send that ended it (so that it is logged once).
    fn send(&self, bytes: Vec<u8>, at: Option<Instant>, max: usize) -> bool {
        let q = &self.0;
        if q.killed.load(Ordering::Relaxed) {
            return false;
        }
        let queued = q.queued.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
        if queued > max {
            q.killed.store(true, Ordering::Relaxed);
            q.kill.notify_one();
            return true;
        }
        q.push(Outbound::Bytes(bytes, at));
        false
    }
}

/// State shared by every task.
pub struct Shared {
    hub: Mutex<Hub>,
    conns: Mutex<HashMap<ConnId, ConnHandle>>,
    calls: Mutex<HashMap<u64, oneshot::Sender<(i32, Value)>>>,
    events: broadcast::Sender<EventRecord>,
    next_conn: AtomicU64,
    device_slots: Arc<Semaphore>,
    tls_slots: Arc<Semaphore>,
    /// The limits in force.
    pub limits: Limits,
    /// Logs connection refusals and closes to stderr (`--quiet` turns it off).
    pub verbose: bool,
}

/// Milliseconds since 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Shared {
    /// Wraps a hub, with the default [`Limits`].
    pub fn new(hub: Hub, verbose: bool) -> Arc<Shared> {
        Shared::with_limits(hub, verbose, Limits::default())
    }

    /// Wraps a hub with the given limits.
    pub fn with_limits(hub: Hub, verbose: bool, limits: Limits) -> Arc<Shared> {
        Arc::new(Shared {
            hub: Mutex::new(hub),
            conns: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            next_conn: AtomicU64::new(1),
            device_slots: Arc::new(Semaphore::new(limits.max_connections)),
            tls_slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            verbose,
        })
    }

    /// A slot for one more device connection, or `None` at the cap (logged).
    pub fn device_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.device_slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            eprintln!(
                "devhub: refusing a device connection: {} are open already (--max-connections)",
                self.limits.max_connections
            );
        }
        slot
    }

    /// A slot for one more TLS socket on the HTTPS listener, or `None` at the cap (logged).
    pub fn tls_slot(&self) -> Option<OwnedSemaphorePermit> {
        let slot = self.tls_slots.clone().try_acquire_owned().ok();
        if slot.is_none() {
            eprintln!(
                "devhub: refusing a TLS connection: {} are open already (--max-connections)",
                self.limits.max_connections
            );
        }
        slot
    }

    /// Runs `f` with the hub locked and carries out the actions it returned before the
    /// lock is released: actions reach each connection's queue in the order the hub made
    /// them, even when REST handlers and connections call in at once (C2D messages must go
    /// out in packet-id order, or the device's in-order PUBACKs look out of order).
    /// Dispatching only queues bytes and wakes waiters; it never blocks.
    pub fn with_hub<T>(&self, f: impl FnOnce(&mut Hub) -> (T, Vec<Action>)) -> T {
        let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        hub.event_listeners = self.events.receiver_count() > 0;
        let (value, actions) = f(&mut hub);
        let delay = hub.answer_delay_ms();
        self.dispatch(actions, delay);
        drop(hub);
        value
    }

    /// Reads from the hub without actions.
    pub fn read_hub<T>(&self, f: impl FnOnce(&Hub) -> T) -> T {
        let hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
        f(&hub)
    }

    /// Registers a waiter for a method call's result.
    pub fn wait_call(&self, call: u64) -> oneshot::Receiver<(i32, Value)> {
        let (tx, rx) = oneshot::channel();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(call, tx);
        rx
    }

    /// Forgets a waiter (timeout).
    pub fn forget_call(&self, call: u64) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&call);
    }

    /// Subscribes to stored telemetry.
    pub fn events(&self) -> broadcast::Receiver<EventRecord> {
        self.events.subscribe()
    }

    fn dispatch(&self, actions: Vec<Action>, delay_ms: u64) {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.limits.max_outbound_bytes;
        // The delay fault holds sends and closes alike, in order (a refusal's CONNACK
        // still comes before its close).
        let at = (delay_ms > 0).then(|| Instant::now() + Duration::from_millis(delay_ms));
        for a in actions {
            match a {
                Action::Send(conn, packet) => {
                    let (Some(h), Ok(bytes)) = (conns.get(&conn), packet.to_bytes()) else {
                        continue;
                    };
                    if h.send(bytes, at, max) && self.verbose {
                        eprintln!("devhub: connection {conn} closed: it does not read what devhub sends (more than {max} bytes waiting)");
                    }
                }
                Action::Close(conn, why) => {
                    if self.verbose {
                        eprintln!("devhub: connection {conn} closed: {why}");
                    }
                    if let Some(h) = conns.get(&conn) {
                        h.0.push(Outbound::Close(at));
                    }
                }
                Action::MethodResult {
                    call,
                    status,
                    payload,
                } => {
                    if let Some(tx) = self
                        .calls
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&call)
                    {
                        let _ = tx.send((status, payload));
                    }
                }
                Action::Event(ev) => {
                    let _ = self.events.send(*ev);
                }
            }
        }
    }

    fn register(&self) -> (ConnId, Conn) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let q = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            kill: Notify::new(),
            killed: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        });
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, ConnHandle(q.clone()));
        (
            id,
            Conn {
                q,
                held: None,
                closing: false,
            },
        )
    }

    fn unregister(&self, id: ConnId) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.with_hub(|h| ((), h.closed(id, false, now_ms())));
    }
}

/// The task's side of one connection.
struct Conn {
    q: Arc<Queue>,
    /// An item taken from the queue that is not due yet (delay fault).
    held: Option<Outbound>,
    /// A close was queued behind the bytes returned last.
    closing: bool,
}

/// The most bytes gathered into one write.
const MAX_WRITE: usize = 64 * 1024;

impl Conn {
    /// The next bytes to write, when due, gathering every packet already queued (up to
    /// 64 KiB) into one write: MQTT over WebSocket lets one message carry several packets,
    /// and one write per packet would cost a system call each. `None` when the connection
    /// must end.
    async fn next(&mut self) -> Option<Vec<u8>> {
        if self.closing {
            return None;
        }
        // Cancel-safe: an item stays in `held` until it is due and returned.
        if self.held.is_none() {
            self.held = Some(loop {
                // Nothing awaits between taking an item and keeping it.
                if let Some(o) = self.q.pop() {
                    break o;
                }
                // `notify_one` keeps a permit when nobody waits: a push between the pop
                // above and this wait is not missed.
                tokio::select! {
                    _ = self.q.ready.notified() => {}
                    _ = self.q.kill.notified() => return None,
                }
            });
        }
        let at = match &self.held {
            Some(Outbound::Bytes(_, at) | Outbound::Close(at)) => *at,
            None => None,
        };
        if !self.wait(at).await {
            return None;
        }
        let mut bytes = match self.held.take() {
            Some(Outbound::Bytes(b, _)) => b,
            Some(Outbound::Close(_)) | None => return None,
        };
        while bytes.len() < MAX_WRITE {
            let Some(o) = self.q.pop() else { break };
            match o {
                Outbound::Bytes(b, at) if due(at) => bytes.extend_from_slice(&b),
                Outbound::Close(at) if due(at) => {
                    self.closing = true;
                    break;
                }
                later => {
                    self.held = Some(later);
                    break;
                }
            }
        }
        Some(bytes)
    }

    /// Waits until `at`; false when the connection was ended meanwhile.
    async fn wait(&self, at: Option<Instant>) -> bool {
        let Some(at) = at else { return true };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => true,
            _ = self.q.kill.notified() => false,
        }
    }

    /// Marks `n` queued bytes as written.
    fn written(&self, n: usize) {
        self.q.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

fn due(at: Option<Instant>) -> bool {
    at.is_none_or(|at| at <= Instant::now())
}

/// Runs the hub's clock: keep-alive, token expiry and C2D locks, every 250 ms.
pub async fn ticker(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        shared.with_hub(|h| ((), h.tick(now_ms())));
    }
}

/// Decodes bytes of one connection and hands packets to the hub.
struct Inbound {
    id: ConnId,
    /// Bytes received; `buf[start..]` is not decoded yet.
    buf: Vec<u8>,
    start: usize,
    decoder: Decoder,
    connected: bool,
    /// The last [`Inbound::process`] stopped at its budget with whole packets left.
    more: bool,
}

/// Packets handed to the hub before a connection task lets others run.
const BATCH: usize = 64;

impl Inbound {
    fn new(id: ConnId) -> Inbound {
        Inbound {
            id,
            buf: Vec::new(),
            start: 0,
            decoder: Decoder::default(),
            connected: false,
            more: false,
        }
    }

    /// Bytes received and not yet handled.
    fn backlog(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Adds received bytes; call [`Inbound::process`] until [`Inbound::more`] is false.
    fn feed(&mut self, data: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        self.more = true;
    }

    /// Hands up to [`BATCH`] whole packets to the hub, in one turn of its lock and one
    /// store transaction ([`Hub::batch`]). Each byte is decoded once and the consumed bytes
    /// are removed once, when the backlog is gone, so a message holding a million packets
    /// costs linear time. Returns an error (why to close) for malformed bytes or a protocol
    /// violation, after the packets before it were handled.
    fn process(&mut self, shared: &Shared) -> Result<(), String> {
        let mut batch = Vec::new();
        let mut error = None;
        let mut drained = false;
        // A PUBLISH is handed over borrowed from the receive buffer (telemetry is stored
        // from it without a copy), so the buffer changes only after the batch.
        for _ in 0..BATCH {
            match self.decoder.decode_ref(&self.buf[self.start..]) {
                Ok(None) => {
                    drained = true;
                    break;
                }
                Ok(Some((packet, used))) => {
                    self.start += used;
                    let connect = matches!(packet, PacketRef::Other(Packet::Connect(_)));
                    match (self.connected, connect) {
                        (false, true) => self.connected = true,
                        (false, false) => {
                            error = Some(format!("{} before CONNECT", packet.name()));
                            break;
                        }
                        (true, true) => {
                            error = Some("second CONNECT".into());
                            break;
                        }
                        (true, false) => {}
                    }
                    batch.push(packet);
                }
                Err(e) => {
                    error = Some(format!("malformed MQTT: {e}"));
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let id = self.id;
            shared.with_hub(|h| {
                let actions = h.batch(|h| {
                    let mut out = Vec::new();
                    for p in batch {
                        let now = now_ms();
                        out.extend(match p {
                            PacketRef::Other(Packet::Connect(c)) => h.connect(id, c, now),
                            p => h.packet_ref(id, p, now),
                        });
                    }
                    out
                });
                ((), actions)
            });
        }
        if drained {
            self.buf.drain(..self.start);
            self.start = 0;
            self.more = false;
        }
        error.map_or(Ok(()), Err)
    }
}

/// Why a connection loop ended, for the log.
fn log_end(shared: &Shared, id: ConnId, why: &str) {
    if shared.verbose {
        eprintln!("devhub: connection {id}: {why}");
    }
}

/// Writes one gathered batch of `n` bytes with `write`, unless the connection is ended
/// meanwhile or the device takes no bytes for the write timeout. False: end the connection.
async fn write_guarded(
    shared: &Shared,
    id: ConnId,
    conn: &Conn,
    n: usize,
    write: impl std::future::Future<Output = bool>,
) -> bool {
    let ok = tokio::select! {
        ok = write => ok,
        _ = conn.q.kill.notified() => false,
        _ = tokio::time::sleep(shared.limits.write_timeout) => {
            log_end(shared, id, "does not read what devhub sends (write timeout)");
            false
        }
    };
    conn.written(n);
    ok
}

/// Hands one batch of the decoded backlog to the hub, then lets other tasks run. False:
/// end the connection (malformed bytes or a protocol violation, logged).
async fn process_batch(shared: &Shared, inbound: &mut Inbound) -> bool {
    if let Err(why) = inbound.process(shared) {
        log_end(shared, inbound.id, &why);
        return false;
    }
    tokio::task::yield_now().await;
    true
}

// Both connection loops below have one shape: writes first (what the hub already said goes
// out before more is read), then the decoded backlog a batch at a time (yielding between
// batches so that one flood cannot hold a worker thread), and only then new input, so a
// client that sends faster than devhub decodes is slowed by TCP rather than buffered.

/// Serves MQTT over a byte stream (TCP or TLS). `_slot` is held until it ends.
pub async fn serve_stream<S>(shared: Arc<Shared>, stream: S, _slot: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (id, mut conn) = shared.register();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbound = Inbound::new(id);
    let connect_by = Instant::now() + shared.limits.connect_timeout;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            out = conn.next() => match out {
                Some(b) => {
                    let n = b.len();
                    if !write_guarded(&shared, id, &conn, n, async { wr.write_all(&b).await.is_ok() }).await {
                        break;
                    }
                }
                None => break,
            },
            _ = std::future::ready(()), if inbound.more => {
                if !process_batch(&shared, &mut inbound).await {
                    break;
                }
            }
            _ = tokio::time::sleep_until(connect_by), if !inbound.connected => {
                log_end(&shared, id, "no CONNECT within the connect timeout");
                break;
            }
            n = rd.read(&mut chunk), if !inbound.more => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => inbound.feed(&chunk[..n]),
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    shared.unregister(id);
}

/// The most received bytes gathered into one batch before the hub handles them.
const GATHER: usize = 64 * 1024;

/// Takes one received WebSocket message: its bytes are fed to `inbound`. `Some` when the
/// connection ends, with why (for the log) unless the device closed it.
fn take_message(
    inbound: &mut Inbound,
    msg: Option<Result<axum::extract::ws::Message, axum::Error>>,
) -> Option<Option<String>> {
    use axum::extract::ws::Message;
    match msg {
        Some(Ok(Message::Binary(b))) => {
            inbound.feed(&b);
            None
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
        Some(Ok(Message::Text(_))) => Some(Some(
            "text frame; MQTT over WebSocket uses binary frames".into(),
        )),
        Some(Err(e)) => Some(Some(format!("WebSocket: {e}"))),
        Some(Ok(Message::Close(_))) | None => Some(None),
    }
}

/// Serves MQTT over an axum WebSocket (binary frames). `_slot` is held until it ends.
pub async fn serve_websocket(
    shared: Arc<Shared>,
    socket: axum::extract::ws::WebSocket,
    _slot: OwnedSemaphorePermit,
) {
    use axum::extract::ws::Message;
    use futures_util::{FutureExt, SinkExt, StreamExt};

    let (id, mut conn) = shared.register();
    let (mut tx_ws, mut rx_ws) = socket.split();
    let mut inbound = Inbound::new(id);
    let connect_by = Instant::now() + shared.limits.connect_timeout;
    loop {
        tokio::select! {
            biased;
            out = conn.next() => match out {
                Some(b) => {
                    let n = b.len();
                    let write = async { tx_ws.send(Message::Binary(b.into())).await.is_ok() };
                    if !write_guarded(&shared, id, &conn, n, write).await {
                        break;
                    }
                }
                None => break,
            },
            _ = std::future::ready(()), if inbound.more => {
                if !process_batch(&shared, &mut inbound).await {
                    break;
                }
            }
            _ = tokio::time::sleep_until(connect_by), if !inbound.connected => {
                log_end(&shared, id, "no CONNECT within the connect timeout");
                break;
            }
            msg = rx_ws.next(), if !inbound.more => {
                let mut end = take_message(&mut inbound, msg);
                // Messages that have already arrived join the same batch (one turn of the
                // hub's lock and one commit for all of them), up to 64 KiB.
                while end.is_none() && inbound.backlog() < GATHER {
                    match rx_ws.next().now_or_never() {
                        Some(msg) => end = take_message(&mut inbound, msg),
                        None => break,
                    }
                }
                if let Some(why) = end {
                    // What came before the end is still handled.
                    while inbound.more {
                        if !process_batch(&shared, &mut inbound).await {
                            break;
                        }
                    }
                    if let Some(why) = why {
                        log_end(&shared, id, &why);
                    }
                    break;
                }
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), tx_ws.send(Message::Close(None))).await;
    shared.unregister(id);
}
