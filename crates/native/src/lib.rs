//! A native driver for [`DeviceSession`]: one tokio task owns the session and its
//! WebSocket, and carries bytes, timers and commands, exactly as the browser glue does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use twinscope_native::NativeDevice;
//! let mut dev = NativeDevice::connect("HostName=localhost;DeviceId=d1;SharedAccessKey=...", "ws://127.0.0.1:8080/$iothub/websocket", 3600)?;
//! dev.wait_connected(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::iothub::ConnectionString;
use twinscope_proto::session::{
    DeviceSession, Event, MessageId, RequestId, SessionConfig, State, Telemetry,
};

/// Milliseconds since 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Command {
    Telemetry(Box<Telemetry>, oneshot::Sender<Result<MessageId, String>>),
    GetTwin(oneshot::Sender<Result<RequestId, String>>),
    PatchReported(Value, oneshot::Sender<Result<RequestId, String>>),
    RespondMethod(String, i32, Vec<u8>, oneshot::Sender<Result<(), String>>),
    Disconnect,
}

/// A device session running on tokio.
pub struct NativeDevice {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    state: tokio::sync::watch::Receiver<State>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The open transport: MQTT over WebSocket (IoT Hub's, devhub's), or over plain TCP for
/// `mqtt://host:port` URLs (a plain MQTT broker, such as the benchmarks' mosquitto).
enum Link {
    Ws(Box<Ws>),
    Tcp(tokio::net::TcpStream, Box<[u8]>),
}

impl Link {
    /// The next bytes from the peer; `None` when the connection ended.
    async fn read(&mut self) -> Option<Vec<u8>> {
        match self {
            Link::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                }
            },
            Link::Tcp(s, buf) => {
                use tokio::io::AsyncReadExt;
                match s.read(buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => Some(buf[..n].to_vec()),
                }
            }
        }
    }

    async fn write(&mut self, b: Vec<u8>) -> bool {
        match self {
            Link::Ws(ws) => ws.send(Message::Binary(b.into())).await.is_ok(),
            Link::Tcp(s, _) => {
                use tokio::io::AsyncWriteExt;
                s.write_all(&b).await.is_ok()
            }
        }
    }

    async fn close(self) {
        match self {
            Link::Ws(mut ws) => {
                let _ = ws.as_mut().close(None).await;
            }
            Link::Tcp(mut s, _) => {
                use tokio::io::AsyncWriteExt;
                let _ = s.shutdown().await;
            }
        }
    }
}

impl NativeDevice {
    /// Starts a session for a device connection string over `url` (ws:// or wss://),
    /// signing tokens valid for `ttl_s` seconds and renewing them at 80% of their life.
    /// Must be called inside a tokio runtime.
    pub fn connect(connection_string: &str, url: &str, ttl_s: u64) -> Result<NativeDevice, String> {
        let cs = ConnectionString::parse_device(connection_string).map_err(|e| e.to_string())?;
        let identity = cs.identity().ok_or("no device in the connection string")?;
        if !cs.can_sign() {
            return Err("the connection string has no key".into());
        }
        let mut session = DeviceSession::new(SessionConfig::new(cs.host_name.clone(), identity));
        let now = now_ms();
        session
            .supply_token(
                now,
                cs.sas_token(now / 1000 + ttl_s)
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
        session.connect(now).map_err(|e| e.to_string())?;
        let (ctx, crx) = mpsc::unbounded_channel();
        let (etx, erx) = mpsc::unbounded_channel();
        let (stx, srx) = tokio::sync::watch::channel(State::Connecting);
        let driver = Driver {
            session,
            url: url.to_string(),
            cs,
            ttl_s,
            events: etx,
            state: stx,
            ws: None,
        };
        tokio::spawn(driver.run(crx));
        Ok(NativeDevice {
            commands: ctx,
            events: erx,
            state: srx,
        })
    }

    /// The session's state.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Waits until connected, or fails after `timeout`.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<(), String> {
        let mut rx = self.state.clone();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| *s == State::Connected).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the session ended".to_string()),
            Err(_) => Err(format!(
                "not connected after {timeout:?} (state {:?})",
                self.state()
            )),
        }
    }

    /// The next event (packets, acknowledgements, messages, ...); `None` when the driver
    /// has stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| "the session has stopped".to_string())?;
        rx.await
            .map_err(|_| "the session has stopped".to_string())?
    }

    /// Sends (or queues) telemetry.
    pub async fn send_telemetry(&self, t: Telemetry) -> Result<MessageId, String> {
        self.ask(|tx| Command::Telemetry(Box::new(t), tx)).await
    }

    /// Asks for the twin; the answer comes as [`Event::Twin`].
    pub async fn get_twin(&self) -> Result<RequestId, String> {
        self.ask(Command::GetTwin).await
    }

    /// Sends a reported patch; the answer comes as [`Event::ReportedPatched`].
    pub async fn patch_reported(&self, patch: Value) -> Result<RequestId, String> {
        self.ask(|tx| Command::PatchReported(patch, tx)).await
    }

    /// Answers a method call.
    pub async fn respond_method(
        &self,
        rid: &str,
        status: i32,
        payload: &[u8],
    ) -> Result<(), String> {
        let (rid, payload) = (rid.to_string(), payload.to_vec());
        self.ask(|tx| Command::RespondMethod(rid, status, payload, tx))
            .await
    }

    /// Disconnects and stops the driver.
    pub fn disconnect(&self) {
        let _ = self.commands.send(Command::Disconnect);
    }
}

impl Drop for NativeDevice {
    fn drop(&mut self) {
        self.disconnect();
    }
}

struct Driver {
    session: DeviceSession,
    url: String,
    /// Signs every token, the first and the renewed ones alike.
    cs: ConnectionString,
    ttl_s: u64,
    events: mpsc::UnboundedSender<Event>,
    state: tokio::sync::watch::Sender<State>,
    ws: Option<Link>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut stopping = false;
        loop {
            self.pump().await;
            if stopping && self.ws.is_none() {
                return;
            }
            let deadline = self.session.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => {
                        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await
                    }
                    None => std::future::pending().await,
                }
            };
            let read = async {
                match &mut self.ws {
                    Some(ws) => ws.read().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = read => match msg {
                    Some(b) => self.session.handle_bytes(now_ms(), &b),
                    None => {
                        self.ws = None;
                        self.session.handle_closed(now_ms());
                    }
                },
                cmd = commands.recv() => {
                    let now = now_ms();
                    match cmd {
                        Some(Command::Telemetry(t, tx)) => { let _ = tx.send(self.session.publish_telemetry(now, *t).map_err(|e| e.to_string())); }
                        Some(Command::GetTwin(tx)) => { let _ = tx.send(self.session.get_twin(now).map_err(|e| e.to_string())); }
                        Some(Command::PatchReported(v, tx)) => { let _ = tx.send(self.session.patch_reported(now, &v).map_err(|e| e.to_string())); }
                        Some(Command::RespondMethod(rid, status, body, tx)) => {
                            let _ = tx.send(self.session.respond_method(now, &rid, status, &body).map_err(|e| e.to_string()));
                        }
                        Some(Command::Disconnect) | None => {
                            self.session.disconnect(now);
                            stopping = true;
                        }
                    }
                }
                _ = sleep => self.session.handle_timeout(now_ms()),
            }
        }
    }

    /// Writes pending bytes, then acts on events (bytes before a close go out first).
    async fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(b) = self.session.poll_transmit() {
                progressed = true;
                if let Some(ws) = &mut self.ws {
                    if !ws.write(b).await {
                        self.ws = None;
                        self.session.handle_closed(now_ms());
                    }
                }
            }
            while let Some(e) = self.session.poll_event() {
                progressed = true;
                match &e {
                    Event::OpenTransport => self.open().await,
                    Event::CloseTransport => {
                        if let Some(ws) = self.ws.take() {
                            ws.close().await;
                        }
                        self.session.handle_closed(now_ms());
                    }
                    Event::State(s) => {
                        let _ = self.state.send(*s);
                    }
                    Event::TokenNeeded => {
                        let now = now_ms();
                        if let Ok(t) = self.cs.sas_token(now / 1000 + self.ttl_s) {
                            let _ = self.session.supply_token(now, t);
                        }
                    }
                    _ => {}
                }
                let _ = self.events.send(e);
            }
            if !progressed {
                return;
            }
        }
    }

    async fn open(&mut self) {
        if let Some(addr) = self.url.strip_prefix("mqtt://") {
            let addr = addr.trim_end_matches('/');
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    self.ws = Some(Link::Tcp(s, vec![0; 16 * 1024].into_boxed_slice()));
                    self.session.handle_opened(now_ms());
                }
                Err(e) => {
                    let _ = self
                        .events
                        .send(Event::Error(format!("cannot open {}: {e}", self.url)));
                    self.session.handle_closed(now_ms());
                }
            }
            return;
        }
        let opened = match self.url.as_str().into_client_request() {
            Ok(mut r) => {
                r.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    "mqtt".parse().expect("valid header"),
                );
                // tungstenite zeroes its whole read buffer's spare room before every read
                // (128 KiB by default): with small packets that memset was a seventh of
                // the driver's time. 16 KiB, like the TCP link's buffer; frames are
                // written at once (each send is flushed anyway).
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(16 * 1024)
                    .write_buffer_size(0);
                // No Nagle delay (the third argument): requests are small and waited on.
                tokio_tungstenite::connect_async_with_config(r, Some(config), true)
                    .await
                    .map(|(ws, _)| ws)
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok(ws) => {
                self.ws = Some(Link::Ws(Box::new(ws)));
                self.session.handle_opened(now_ms());
            }
            Err(e) => {
                let _ = self
                    .events
                    .send(Event::Error(format!("cannot open {}: {e}", self.url)));
                self.session.handle_closed(now_ms());
            }
        }
    }
}
