//! The MQTT-over-WebSocket transport both sessions use (the hub's and DPS's): a
//! `web_sys::WebSocket` with subprotocol `mqtt` and binary frames, owning its callbacks;
//! dropping it closes the socket without calling back.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use leptos::wasm_bindgen::closure::Closure;
use leptos::wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// An open (or opening) socket and its callbacks.
pub struct Socket {
    ws: WebSocket,
    out: Rc<RefCell<Outgoing>>,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// Bytes written in the current task, not yet handed to the WebSocket.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    /// A flush is queued as a microtask.
    scheduled: bool,
}

/// The most bytes gathered into one WebSocket message (a single larger packet goes alone).
const MAX_MESSAGE: usize = 64 * 1024;

impl Outgoing {
    fn flush(&mut self, ws: &WebSocket) {
        self.scheduled = false;
        if !self.buf.is_empty() {
            let _ = ws.send_with_u8_array(&self.buf);
            self.buf.clear();
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // What was written last (a DISCONNECT) still goes out, before the close.
        self.out.borrow_mut().flush(&self.ws);
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

impl Socket {
    /// Opens `url` with subprotocol `mqtt`. `on_close` gets the close code and reason.
    pub fn open(
        url: &str,
        on_open: impl FnMut() + 'static,
        mut on_bytes: impl FnMut(Vec<u8>) + 'static,
        mut on_close: impl FnMut(u16, String) + 'static,
    ) -> Result<Socket, String> {
        let ws = WebSocket::new_with_str(url, "mqtt")
            .map_err(|e| format!("cannot open {url}: {}", js_error(&e)))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let on_open = Closure::<dyn FnMut()>::new(on_open);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                on_bytes(js_sys::Uint8Array::new(&buf).to_vec());
            }
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            on_close(e.code(), e.reason())
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            out: Rc::default(),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Writes one packet (ignored if the socket is not open). Packets written in the same
    /// task go out together, as one WebSocket message of up to 64 KiB, when the task ends
    /// (a microtask): MQTT over WebSocket lets a message carry several packets (MQTT 3.1.1
    /// §6), and each `WebSocket.send` costs the page about as much as a whole message's
    /// worth of our own work.
    pub fn send(&self, bytes: &[u8]) {
        let mut out = self.out.borrow_mut();
        if !out.buf.is_empty() && out.buf.len() + bytes.len() > MAX_MESSAGE {
            out.flush(&self.ws);
        }
        out.buf.extend_from_slice(bytes);
        if !out.scheduled {
            out.scheduled = true;
            let (ws, weak) = (self.ws.clone(), Rc::downgrade(&self.out));
            leptos::task::spawn_local(async move {
                if let Some(out) = weak.upgrade() {
                    out.borrow_mut().flush(&ws);
                }
            });
        }
    }
}

/// A session fed by one socket at a time (the device's or DPS's), and that socket.
pub trait SocketOwner: 'static {
    /// The socket slot.
    fn socket(&mut self) -> &mut Option<Socket>;
    /// Bumped whenever the socket is replaced or closed: a callback from an older socket
    /// then does nothing.
    fn generation(&mut self) -> &mut u64;
    /// The socket opened.
    fn opened(&mut self, now: u64);
    /// Bytes arrived.
    fn bytes(&mut self, now: u64, bytes: &[u8]);
    /// The socket ended (whoever closed it).
    fn closed(&mut self, now: u64);
    /// When the session next wants [`SocketOwner::timeout`] (ms since 1970), if ever.
    fn next_timeout(&self) -> Option<u64>;
    /// That time came.
    fn timeout(&mut self, now: u64);
    /// The armed timer's slot (replacing it cancels the old one).
    fn timer(&mut self) -> &mut ArmedTimer;
}

/// The armed timer, with the time (ms) it fires at.
pub type ArmedTimer = Option<(u64, gloo_timers::callback::Timeout)>;

/// Arms the session's next timeout: when it fires, the session hears of it and `pump`
/// carries out what it asks. A timer already armed to fire no later than needed is kept:
/// firing early is harmless (the session finds nothing due and `pump` arms the next one),
/// while re-arming after every packet (each send moves the keep-alive deadline) cost a
/// JS closure, a `setTimeout` and a `clearTimeout` per message under a telemetry burst.
pub fn arm_timer<T: SocketOwner>(
    rc: &Rc<RefCell<T>>,
    now: fn() -> u64,
    pump: impl Fn(&Rc<RefCell<T>>) + 'static,
) {
    let at = rc.borrow().next_timeout();
    let mut i = rc.borrow_mut();
    let armed = i.timer();
    match (at, armed.as_ref()) {
        (Some(at), Some((fires, _))) if *fires <= at => return,
        (None, _) => {
            *armed = None;
            return;
        }
        _ => {}
    }
    drop(i);
    let weak = Rc::downgrade(rc);
    let timer = at.map(|at| {
        let delay = at.saturating_sub(now()).min(i32::MAX as u64) as u32;
        let t = gloo_timers::callback::Timeout::new(delay, move || {
            if let Some(rc) = weak.upgrade() {
                // This timer has fired: take it out, so that `pump` arms the next (it is
                // dropped after this callback returns).
                let _fired = rc.borrow_mut().timer().take();
                rc.borrow_mut().timeout(now());
                pump(&rc);
            }
        });
        (at, t)
    });
    *rc.borrow_mut().timer() = timer;
}

/// Opens `url` for the session in `rc`, replacing (and retiring) its socket. Each callback
/// feeds the session, then calls `pump` to carry out what it asks; `on_abnormal` hears a
/// close with a code other than 1000/1005 first. `Err` when the socket cannot be made
/// (the session is then told it closed).
pub fn attach<T: SocketOwner>(
    rc: &Rc<RefCell<T>>,
    url: &str,
    now: fn() -> u64,
    pump: impl Fn(&Rc<RefCell<T>>) + Clone + 'static,
    on_abnormal: impl Fn(u16, String) + 'static,
) -> Result<(), String> {
    let generation = {
        let mut i = rc.borrow_mut();
        *i.generation() += 1;
        retire(i.socket().take());
        *i.generation()
    };
    let current = move |weak: &Weak<RefCell<T>>| -> Option<Rc<RefCell<T>>> {
        let rc = weak.upgrade()?;
        let ok = *rc.borrow_mut().generation() == generation;
        ok.then_some(rc)
    };
    let weak = Rc::downgrade(rc);
    let on_open = {
        let (weak, pump) = (weak.clone(), pump.clone());
        move || {
            if let Some(rc) = current(&weak) {
                rc.borrow_mut().opened(now());
                pump(&rc);
            }
        }
    };
    let on_bytes = {
        let (weak, pump) = (weak.clone(), pump.clone());
        move |b: Vec<u8>| {
            if let Some(rc) = current(&weak) {
                rc.borrow_mut().bytes(now(), &b);
                pump(&rc);
            }
        }
    };
    let on_close = move |code: u16, reason: String| {
        let Some(rc) = current(&weak) else { return };
        if code != 1000 && code != 1005 {
            on_abnormal(code, reason);
        }
        let socket = {
            let mut i = rc.borrow_mut();
            *i.generation() += 1;
            i.socket().take()
        };
        retire(socket);
        rc.borrow_mut().closed(now());
        pump(&rc);
    };
    match Socket::open(url, on_open, on_bytes, on_close) {
        Ok(s) => {
            *rc.borrow_mut().socket() = Some(s);
            Ok(())
        }
        Err(e) => {
            rc.borrow_mut().closed(now());
            Err(e)
        }
    }
}

/// Drops a socket after the current callback returns: its closures may be running now.
pub fn retire(socket: Option<Socket>) {
    if let Some(s) = socket {
        leptos::task::spawn_local(async move { drop(s) });
    }
}

/// A JavaScript error in words.
pub fn js_error(e: &wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}
