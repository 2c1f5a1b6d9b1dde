//! Helpers shared by devhub's end-to-end test files: the real `devhub` binary on an
//! ephemeral loopback port, and a device speaking MQTT over a real WebSocket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use twinscope_proto::iothub::{sas, ConnectionString, SymmetricKey};
use twinscope_proto::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoder, Packet, PacketId, Publish, QoS, QosPid,
    Subscribe, SubscribeFilter,
};

/// A devhub process, killed on drop.
pub struct Devhub {
    pub child: Child,
    pub addr: String,
    pub service_key: SymmetricKey,
    pub devices: Vec<String>,
    /// The MQTT/TLS address, when started with `--mqtt-tls-listen`.
    pub mqtts: Option<String>,
}

impl Drop for Devhub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // An in-memory devhub with TLS keeps its certificates here; killed, it cannot
        // remove them itself.
        let tls = std::env::temp_dir().join(format!("devhub-tls-{}", self.child.id()));
        let _ = std::fs::remove_dir_all(tls);
    }
}

pub fn start(extra: &[&str], data: Option<&Path>) -> Devhub {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_devhub"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--hub-name",
        "localhost",
        "--device",
        "d1",
        "--device",
        "d2",
    ]);
    // DEVHUB_LOG=1 shows devhub's log of closes and refusals.
    if std::env::var_os("DEVHUB_LOG").is_none() {
        cmd.arg("--quiet");
    }
    match data {
        Some(p) => cmd.arg("--data").arg(p),
        None => cmd.arg("--in-memory"),
    };
    let mut child = cmd
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start devhub");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut service, mut devices, mut mqtts) = (None, None, Vec::new(), None);
    let want_mqtts = extra.contains(&"--mqtt-tls-listen");
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(s) = line.strip_prefix("devhub: service      ") {
            service = Some(s.to_string());
        } else if let Some(s) = line.strip_prefix("devhub: device       ") {
            devices.push(s.to_string());
        } else if let Some(s) = line.strip_prefix("devhub: listening    http://") {
            addr = Some(s.split('/').next().unwrap().to_string());
        } else if let Some(s) = line.strip_prefix("devhub: listening    mqtts://") {
            mqtts = Some(s.split(' ').next().unwrap().to_string());
        }
        if addr.is_some() && (mqtts.is_some() || !want_mqtts) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let service = ConnectionString::parse(&service.expect("service line")).unwrap();
    Devhub {
        child,
        addr: addr.expect("listening line"),
        service_key: service.shared_access_key.unwrap(),
        devices,
        mqtts,
    }
}

impl Devhub {
    pub fn device(&self, id: &str) -> ConnectionString {
        let cs = self
            .devices
            .iter()
            .find(|d| d.contains(&format!("DeviceId={id};")))
            .expect("device printed");
        ConnectionString::parse(cs).unwrap()
    }

    pub fn auth(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        sas::build_token(
            "localhost",
            &self.service_key,
            now + 600,
            Some("iothubowner"),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A signed GET of `path`, its body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url(path))
            .header("Authorization", self.auth())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// devhub's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }
}

/// A device over WebSocket.
pub struct Device {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub buf: Vec<u8>,
}

impl Device {
    pub async fn open(hub: &Devhub) -> Device {
        Device::open_path(hub, "/$iothub/websocket").await
    }

    pub async fn open_path(hub: &Devhub, path: &str) -> Device {
        let mut req = format!("ws://{}{path}", hub.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket upgrade");
        assert_eq!(resp.headers()["sec-websocket-protocol"], "mqtt");
        Device {
            ws,
            buf: Vec::new(),
        }
    }

    pub async fn connect(hub: &Devhub, id: &str, clean: bool) -> (Device, ConnAck) {
        Device::connect_at(hub, "/$iothub/websocket", id, clean).await
    }

    pub async fn connect_at(hub: &Devhub, path: &str, id: &str, clean: bool) -> (Device, ConnAck) {
        let mut d = Device::open_path(hub, path).await;
        let cs = hub.device(id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = sas::build_token(
            &format!("localhost/devices/{id}"),
            cs.shared_access_key.as_ref().unwrap(),
            now + 600,
            None,
        );
        d.send(Packet::Connect(Connect {
            client_id: id.into(),
            keep_alive: 60,
            clean_session: clean,
            last_will: None,
            username: Some(format!("localhost/{id}/?api-version=2021-04-12")),
            password: Some(token.into_bytes()),
        }))
        .await;
        let Some(Packet::ConnAck(ack)) = d.recv().await else {
            panic!("no CONNACK")
        };
        (d, ack)
    }

    pub async fn send(&mut self, p: Packet) {
        self.ws
            .send(Message::Binary(p.to_bytes().unwrap().into()))
            .await
            .unwrap();
    }

    /// The next packet, or None when the hub closes the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some((p, used)) = Decoder::default().decode(&self.buf).unwrap() {
                self.buf.drain(..used);
                return Some(p);
            }
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("hub answered in time")
            {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn subscribe_all(&mut self) {
        let filters = [
            "devices/d1/messages/devicebound/#",
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
        ];
        self.send(Packet::Subscribe(Subscribe {
            pkid: PacketId::new(1).unwrap(),
            filters: filters
                .iter()
                .map(|f| SubscribeFilter {
                    filter: f.to_string(),
                    qos: if f.starts_with("devices") {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    },
                })
                .collect(),
        }))
        .await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }
}

/// devhub still accepts `device` and answers it: a refusal elsewhere did not hurt others.
pub async fn still_serves(hub: &Devhub, device: &str) {
    let (mut d, ack) = Device::connect(hub, device, true).await;
    assert_eq!(ack.code, ConnectReturnCode::Accepted);
    d.send(Packet::PingReq).await;
    assert_eq!(d.recv().await, Some(Packet::PingResp));
}

pub fn publish(topic: &str, payload: &[u8], qospid: QosPid) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qospid,
        retain: false,
        topic: topic.into(),
        payload: payload.to_vec(),
    })
}
