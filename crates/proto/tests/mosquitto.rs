//! Conformance: this codec against Debian's mosquitto broker over TCP on 127.0.0.1.
//!
//! Covers CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0, 1 and 2 with their
//! acknowledgements, retained messages, the will, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP
//! and DISCONNECT. `cargo xtask test` installs mosquitto and sets
//! TWINSCOPE_REQUIRE_MOSQUITTO=1, so there a missing broker is a failure, not a skip.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twinscope_proto::mqtt::{
    ConnAck, Connect, ConnectReturnCode, Decoder, LastWill, Packet, PacketId, Publish, QoS, QosPid,
    SubAck, SubAckCode, Subscribe, SubscribeFilter, Unsubscribe,
};

/// A broker on an ephemeral port, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn mosquitto_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.push("/usr/sbin".into());
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

fn start_broker() -> Option<Broker> {
    let Some(bin) = mosquitto_path() else {
        assert!(
            std::env::var_os("TWINSCOPE_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto is not installed (cargo xtask setup installs it)"
        );
        eprintln!("skipping: mosquitto is not installed");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir =
        std::env::temp_dir().join(format!("twinscope-mosquitto-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let broker = Broker {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(broker)
}

/// A client speaking only through this crate's codec.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
}

impl Client {
    fn connect(broker: &Broker, client_id: &str, will: Option<LastWill>) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", broker.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut c = Client {
            stream,
            buf: Vec::new(),
            decoder: Decoder::default(),
        };
        c.send(Packet::Connect(Connect {
            client_id: client_id.into(),
            keep_alive: 30,
            clean_session: true,
            last_will: will,
            username: None,
            password: None,
        }));
        assert_eq!(
            c.recv(),
            Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted
            })
        );
        c
    }

    fn send(&mut self, p: Packet) {
        self.stream.write_all(&p.to_bytes().unwrap()).unwrap();
    }

    fn recv(&mut self) -> Packet {
        loop {
            if let Some((p, used)) = self
                .decoder
                .decode(&self.buf)
                .expect("broker sent a valid packet")
            {
                self.buf.drain(..used);
                return p;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read from broker");
            assert!(n > 0, "broker closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    fn subscribe(&mut self, pkid: u16, filters: &[(&str, QoS)]) -> Vec<SubAckCode> {
        let pkid = PacketId::new(pkid).unwrap();
        self.send(Packet::Subscribe(Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(f, q)| SubscribeFilter {
                    filter: f.to_string(),
                    qos: *q,
                })
                .collect(),
        }));
        match self.recv() {
            Packet::SubAck(SubAck {
                pkid: got,
                return_codes,
            }) => {
                assert_eq!(got, pkid);
                return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    fn publish(&mut self, topic: &str, payload: &[u8], qospid: QosPid, retain: bool) {
        self.send(Packet::Publish(Publish {
            dup: false,
            qospid,
            retain,
            topic: topic.into(),
            payload: payload.to_vec(),
        }));
    }
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

#[test]
fn codec_interoperates_with_mosquitto() {
    let Some(broker) = start_broker() else { return };

    let mut a = Client::connect(&broker, "sub-a", None);
    assert_eq!(
        a.subscribe(
            1,
            &[
                ("t/a", QoS::AtLeastOnce),
                ("t/b/#", QoS::AtMostOnce),
                ("t/q2", QoS::ExactlyOnce)
            ]
        ),
        vec![
            SubAckCode::Success(QoS::AtLeastOnce),
            SubAckCode::Success(QoS::AtMostOnce),
            SubAckCode::Success(QoS::ExactlyOnce)
        ]
    );
    let mut b = Client::connect(&broker, "pub-b", None);

    // QoS 0 publish arrives at QoS 0.
    b.publish("t/b/x/y", b"zero", QosPid::AtMostOnce, false);
    let p = a.recv_publish();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice(), p.qospid),
        ("t/b/x/y", &b"zero"[..], QosPid::AtMostOnce)
    );

    // QoS 1: PUBACK to the publisher; delivered at QoS 1 and acknowledged by the subscriber.
    b.publish("t/a", &[0u8, 255, 1, 2], QosPid::AtLeastOnce(pid(1)), false);
    assert_eq!(b.recv(), Packet::PubAck(pid(1)));
    let p = a.recv_publish();
    assert_eq!(p.payload, vec![0u8, 255, 1, 2]);
    let QosPid::AtLeastOnce(id) = p.qospid else {
        panic!("expected QoS 1, got {:?}", p.qospid)
    };
    a.send(Packet::PubAck(id));

    // QoS 2: PUBREC, PUBREL, PUBCOMP on both legs.
    b.publish("t/q2", b"two", QosPid::ExactlyOnce(pid(2)), false);
    assert_eq!(b.recv(), Packet::PubRec(pid(2)));
    b.send(Packet::PubRel(pid(2)));
    assert_eq!(b.recv(), Packet::PubComp(pid(2)));
    let p = a.recv_publish();
    let QosPid::ExactlyOnce(id) = p.qospid else {
        panic!("expected QoS 2, got {:?}", p.qospid)
    };
    assert_eq!(p.payload, b"two");
    a.send(Packet::PubRec(id));
    assert_eq!(a.recv(), Packet::PubRel(id));
    a.send(Packet::PubComp(id));

    // A large payload crosses TCP segment boundaries and still decodes.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    b.publish("t/a", &big, QosPid::AtLeastOnce(pid(3)), false);
    assert_eq!(b.recv(), Packet::PubAck(pid(3)));
    let p = a.recv_publish();
    assert_eq!(p.payload, big);
    a.send(Packet::PubAck(p.qospid.pid().unwrap()));

    // Retained: a later subscriber gets the message with RETAIN set.
    b.publish("t/r", b"kept", QosPid::AtLeastOnce(pid(4)), true);
    assert_eq!(b.recv(), Packet::PubAck(pid(4)));
    let mut c = Client::connect(&broker, "late-c", None);
    c.subscribe(1, &[("t/r", QoS::AtLeastOnce)]);
    let p = c.recv_publish();
    assert!(p.retain, "retained message must carry RETAIN");
    assert_eq!(p.payload, b"kept");
    c.send(Packet::PubAck(p.qospid.pid().unwrap()));

    // UNSUBSCRIBE: afterwards nothing arrives on t/a; the PINGRESP comes first.
    a.send(Packet::Unsubscribe(Unsubscribe {
        pkid: pid(9),
        filters: vec!["t/a".into()],
    }));
    assert_eq!(a.recv(), Packet::UnsubAck(pid(9)));
    b.publish("t/a", b"after", QosPid::AtLeastOnce(pid(5)), false);
    assert_eq!(b.recv(), Packet::PubAck(pid(5)));
    a.send(Packet::PingReq);
    assert_eq!(a.recv(), Packet::PingResp);

    // Will: a client that vanishes without DISCONNECT has its will published.
    a.subscribe(2, &[("t/will", QoS::AtLeastOnce)]);
    let w = Client::connect(
        &broker,
        "will-w",
        Some(LastWill {
            topic: "t/will".into(),
            message: b"gone".to_vec(),
            qos: QoS::AtLeastOnce,
            retain: false,
        }),
    );
    w.stream.shutdown(Shutdown::Both).unwrap();
    drop(w);
    let p = a.recv_publish();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("t/will", &b"gone"[..])
    );
    a.send(Packet::PubAck(p.qospid.pid().unwrap()));

    // DISCONNECT: the broker closes the connection and publishes no will.
    b.send(Packet::Disconnect);
    let mut rest = [0u8; 16];
    assert_eq!(
        b.stream.read(&mut rest).unwrap_or(0),
        0,
        "broker should close after DISCONNECT"
    );
    a.send(Packet::PingReq);
    assert_eq!(a.recv(), Packet::PingResp);
}
