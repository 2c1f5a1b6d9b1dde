//! A minimal MQTT-over-WebSocket sink for the browser throughput benchmark: it answers
//! CONNECT with CONNACK, QoS 1 PUBLISH with PUBACK, SUBSCRIBE with SUBACK and PINGREQ with
//! PINGRESP, and keeps nothing, so that what is measured is the client, not a hub.
//! Listens on 127.0.0.1 (an ephemeral port), prints `SINK ws://127.0.0.1:PORT`, and runs
//! until its stdin closes. `cargo run --release -p twinscope-native --example mqtt_sink`.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::mqtt::{
    ConnAck, ConnectReturnCode, Decoder, Packet, QosPid, SubAck, SubAckCode,
};

/// The handshake callback's type is tungstenite's (its error variant is large).
#[allow(clippy::result_large_err)]
fn answer_mqtt(
    _req: &Request,
    mut resp: Response,
) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
    resp.headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    Ok(resp)
}

async fn serve(tcp: tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let ws = tokio_tungstenite::accept_hdr_async(tcp, answer_mqtt).await;
    let Ok(mut ws) = ws else { return };
    let decoder = Decoder::default();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Binary(b) = msg else {
            if msg.is_close() {
                return;
            }
            continue;
        };
        buf.extend_from_slice(&b);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            match decoder.decode(&buf[at..]) {
                Ok(Some((p, used))) => {
                    at += used;
                    let answer = match p {
                        Packet::Connect(_) => Some(Packet::ConnAck(ConnAck {
                            session_present: false,
                            code: ConnectReturnCode::Accepted,
                        })),
                        Packet::Publish(p) => match p.qospid {
                            QosPid::AtLeastOnce(id) => Some(Packet::PubAck(id)),
                            _ => None,
                        },
                        Packet::Subscribe(s) => Some(Packet::SubAck(SubAck {
                            pkid: s.pkid,
                            return_codes: s
                                .filters
                                .iter()
                                .map(|f| SubAckCode::Success(f.qos))
                                .collect(),
                        })),
                        Packet::PingReq => Some(Packet::PingResp),
                        Packet::Disconnect => return,
                        _ => None,
                    };
                    if let Some(a) = answer {
                        let _ = a.encode(&mut out);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.drain(..at);
        if !out.is_empty() && ws.send(Message::Binary(out.into())).await.is_err() {
            return;
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        println!("SINK ws://127.0.0.1:{port}/$iothub/websocket");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        });
        tokio::select! {
            _ = async {
                loop {
                    if let Ok((tcp, _)) = listener.accept().await {
                        tokio::spawn(serve(tcp));
                    }
                }
            } => {}
            _ = stdin_closed => {}
        }
    });
}
