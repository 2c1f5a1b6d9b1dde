//! The MQTT-over-WebSocket transport both sessions use (the hub's and DPS's): a
//! `web_sys::WebSocket` with subprotocol `mqtt` and binary frames, owning its callbacks;
//! dropping it closes the socket without calling back.

use leptos::wasm_bindgen::closure::Closure;
use leptos::wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// An open (or opening) socket and its callbacks.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
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
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Writes one buffer (ignored if the socket is not open).
    pub fn send(&self, bytes: &[u8]) {
        let _ = self.ws.send_with_u8_array(bytes);
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
