//! The glue between sockets and the [`Hub`]: bytes in, packets decoded, actions routed.
//!
//! Each connection task owns its socket and a channel of outbound frames; the shared
//! state routes [`Action`]s to those channels, to waiting method calls, and to event
//! listeners. The hub itself sits behind one mutex and is never held across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use twinscope_proto::mqtt::{Decoder, Packet};

use crate::hub::{Action, ConnId, Hub};
use crate::store::EventRecord;

/// What a connection task is told to do.
#[derive(Debug)]
pub enum Outbound {
    /// Write these bytes (one MQTT packet).
    Bytes(Vec<u8>),
    /// Close the socket.
    Close(String),
}

/// State shared by every task.
pub struct Shared {
    hub: Mutex<Hub>,
    conns: Mutex<HashMap<ConnId, mpsc::UnboundedSender<Outbound>>>,
    calls: Mutex<HashMap<u64, oneshot::Sender<(i32, Value)>>>,
    events: broadcast::Sender<EventRecord>,
    next_conn: AtomicU64,
    /// Logs connection refusals and closes to stderr (`--quiet` turns it off).
    pub verbose: bool,
}

/// Milliseconds since 1970.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    /// Wraps a hub.
    pub fn new(hub: Hub, verbose: bool) -> Arc<Shared> {
        Arc::new(Shared {
            hub: Mutex::new(hub),
            conns: Mutex::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            next_conn: AtomicU64::new(1),
            verbose,
        })
    }

    /// Runs `f` with the hub locked, then carries out the actions it returned.
    pub fn with_hub<T>(&self, f: impl FnOnce(&mut Hub) -> (T, Vec<Action>)) -> T {
        let (value, actions, delay) = {
            let mut hub = self.hub.lock().unwrap_or_else(|p| p.into_inner());
            let (v, a) = f(&mut hub);
            (v, a, hub.answer_delay_ms())
        };
        self.dispatch(actions, delay);
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
        for a in actions {
            match a {
                Action::Send(conn, packet) => {
                    if let (Some(tx), Ok(bytes)) = (conns.get(&conn), packet.to_bytes()) {
                        if delay_ms == 0 {
                            let _ = tx.send(Outbound::Bytes(bytes));
                        } else {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                                let _ = tx.send(Outbound::Bytes(bytes));
                            });
                        }
                    }
                }
                Action::Close(conn, why) => {
                    if self.verbose {
                        eprintln!("devhub: connection {conn} closed: {why}");
                    }
                    if let Some(tx) = conns.get(&conn) {
                        let _ = tx.send(Outbound::Close(why));
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

    fn register(&self) -> (ConnId, mpsc::UnboundedReceiver<Outbound>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        (id, rx)
    }

    fn unregister(&self, id: ConnId) {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.with_hub(|h| ((), h.closed(id, false, now_ms())));
    }
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
    buf: Vec<u8>,
    decoder: Decoder,
    connected: bool,
}

impl Inbound {
    /// Returns an error (why to close) for malformed bytes or a protocol violation.
    fn bytes(&mut self, shared: &Shared, data: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        loop {
            match self.decoder.decode(&self.buf) {
                Ok(None) => return Ok(()),
                Ok(Some((packet, used))) => {
                    self.buf.drain(..used);
                    let now = now_ms();
                    match (self.connected, packet) {
                        (false, Packet::Connect(c)) => {
                            self.connected = true;
                            shared.with_hub(|h| ((), h.connect(self.id, c, now)));
                        }
                        (false, p) => return Err(format!("{} before CONNECT", p.name())),
                        (true, Packet::Connect(_)) => return Err("second CONNECT".into()),
                        (true, p) => shared.with_hub(|h| ((), h.packet(self.id, p, now))),
                    }
                }
                Err(e) => return Err(format!("malformed MQTT: {e}")),
            }
        }
    }
}

/// Serves MQTT over a byte stream (TCP or TLS).
pub async fn serve_stream<S>(shared: Arc<Shared>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (id, mut rx) = shared.register();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbound = Inbound {
        id,
        buf: Vec::new(),
        decoder: Decoder::default(),
        connected: false,
    };
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = rd.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Err(why) = inbound.bytes(&shared, &chunk[..n]) {
                        if shared.verbose {
                            eprintln!("devhub: connection {id}: {why}");
                        }
                        break;
                    }
                }
            },
            out = rx.recv() => match out {
                Some(Outbound::Bytes(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(_)) | None => break,
            },
        }
    }
    let _ = wr.shutdown().await;
    shared.unregister(id);
}

/// Serves MQTT over an axum WebSocket (binary frames).
pub async fn serve_websocket(shared: Arc<Shared>, socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};

    let (id, mut rx) = shared.register();
    let (mut tx_ws, mut rx_ws) = socket.split();
    let mut inbound = Inbound {
        id,
        buf: Vec::new(),
        decoder: Decoder::default(),
        connected: false,
    };
    loop {
        tokio::select! {
            msg = rx_ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Err(why) = inbound.bytes(&shared, &b) {
                        if shared.verbose {
                            eprintln!("devhub: connection {id}: {why}");
                        }
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    if shared.verbose {
                        eprintln!("devhub: connection {id}: text frame; MQTT over WebSocket uses binary frames");
                    }
                    break;
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            out = rx.recv() => match out {
                Some(Outbound::Bytes(b)) => {
                    if tx_ws.send(Message::Binary(b.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(_)) | None => break,
            },
        }
    }
    let _ = tx_ws.send(Message::Close(None)).await;
    shared.unregister(id);
}
