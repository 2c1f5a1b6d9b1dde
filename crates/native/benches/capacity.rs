//! devhub's capacity beside mosquitto's, with the same native `DeviceSession` driver:
//! `cargo xtask bench` (or `cargo bench -p twinscope-native --bench capacity`).
//!
//! 1. Connections held: `CAP_DEVICES` devices (default 10,000) connect and stay connected;
//!    the server's resident memory (VmRSS of its own process) before and after gives the
//!    memory per connection.
//! 2. Twin GET round trip (devhub): with `CAP_TWIN_DEVICES` (default 1,000) devices each
//!    sending one message a second, every tenth device also GETs its twin once a second;
//!    p50 and p99 over `CAP_TWIN_SECS` (default 10) seconds.
//! 3. QoS 1 telemetry rate: `CAP_RATE_DEVICES` (default 20) devices each send
//!    `CAP_RATE_MESSAGES` (default 10,000) messages of 256 B, 64 in flight per device, to
//!    the last PUBACK (20,000 messages in all took mosquitto a sixth of a second, too
//!    short for its steady rate: its rate was 77k a second there and 120-140k here). devhub stores every message in SQLite (a file, WAL) before its PUBACK;
//!    the count stored is checked afterwards. mosquitto keeps nothing (persistence off).
//!
//! devhub runs in a child process (this benchmark re-executed) so that its memory is its
//! own. mosquitto runs over plain TCP: Debian's mosquitto 2.0.11 cannot bind a WebSocket
//! listener to 127.0.0.1 alone, and the tests bind nothing else. WebSocket framing is extra
//! work for devhub, so the comparison leans in mosquitto's favour.
//! With `BENCH_JSON=path` the results are also written there as JSON.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twinscope_devhub::http::{router, HttpConfig};
use twinscope_devhub::hub::{Hub, HubConfig};
use twinscope_devhub::net::{ticker, Limits, Shared};
use twinscope_devhub::store::{Retention, Store};
use twinscope_native::{now_ms, NativeDevice};
use twinscope_proto::iothub::{DeviceId, Identity, PropertyBag, SymmetricKey};
use twinscope_proto::session::{Event, Telemetry};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The child: devhub with `n` devices on a file store in `dir`; writes their connection
/// strings to `dir/cs.txt`, prints `READY port`, and serves until its stdin closes.
fn child(dir: &Path, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut store = Store::open(&dir.join("devhub.db")).unwrap();
        store.set_retention(Retention {
            per_device: u32::MAX / 2,
            total: u32::MAX / 2,
        });
        let cfg = HubConfig {
            hub_name: "localhost".into(),
            owner_key: SymmetricKey::from_bytes(b"bench-owner-key".to_vec()),
            c2d_ttl_ms: 3_600_000,
            c2d_lock_ms: 60_000,
        };
        let mut hub = Hub::new(cfg, store);
        let mut lines = String::new();
        for d in 0..n {
            let id = format!("cap-{d}");
            hub.put_identity(&id, None, &Default::default(), None, now_ms())
                .unwrap();
            let ident = Identity::device(DeviceId::new(id).unwrap());
            lines.push_str(
                &hub.connection_string(&ident, None)
                    .unwrap()
                    .expect("a device key"),
            );
            lines.push('\n');
        }
        std::fs::write(dir.join("cs.txt"), lines).unwrap();
        let limits = Limits {
            max_connections: n + 100,
            ..Limits::default()
        };
        let shared = Shared::with_limits(hub, false, limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(ticker(shared.clone()));
        let app = router(shared.clone(), HttpConfig::default());
        // As devhub's main does.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        println!("READY {port}");
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .unwrap();
    });
}

/// A server under test: its process, the URL devices use and their connection strings.
struct Server {
    name: &'static str,
    proc: Child,
    url: String,
    cs: Vec<String>,
    dir: PathBuf,
}

impl Server {
    fn rss_kb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.proc.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "twinscope-cap-{tag}-{}-{}",
        std::process::id(),
        now_ms()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start_devhub(n: usize) -> Server {
    let dir = temp_dir("devhub");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .env("CAP_CHILD_DIR", &dir)
        .env("CAP_CHILD_DEVICES", n.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(proc.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("devhub child said {line:?}"));
    let cs = std::fs::read_to_string(dir.join("cs.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    Server {
        name: "devhub",
        proc,
        url: format!("ws://127.0.0.1:{port}/$iothub/websocket"),
        cs,
        dir,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_mosquitto(n: usize) -> Server {
    let dir = temp_dir("mosquitto");
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nmax_queued_messages 100000\nlog_type error\n"),
    )
    .unwrap();
    let proc = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mosquitto (apt install mosquitto)");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Any key: mosquitto takes the SAS token as a password it does not check.
    let cs = (0..n)
        .map(|d| format!("HostName=localhost;DeviceId=cap-{d};SharedAccessKey=YmVuY2gta2V5"))
        .collect();
    Server {
        name: "mosquitto",
        proc,
        url: format!("mqtt://127.0.0.1:{port}"),
        cs,
        dir,
    }
}

/// Connects every device (200 at a time); returns those connected and the time taken.
async fn connect_all(s: &Server, n: usize) -> (Vec<NativeDevice>, Duration) {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(200));
    let mut tasks = Vec::new();
    for cs in s.cs.iter().take(n) {
        let cs = cs.clone();
        let url = s.url.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let mut dev = NativeDevice::connect(&cs, &url, 3600).ok()?;
            dev.wait_connected(Duration::from_secs(60)).await.ok()?;
            Some(dev)
        }));
    }
    let mut devs = Vec::new();
    for t in tasks {
        if let Ok(Some(d)) = t.await {
            devs.push(d);
        }
    }
    (devs, start.elapsed())
}

struct Held {
    devices: usize,
    connected: usize,
    secs: f64,
    kb_per: f64,
    rss_mb: f64,
}

async fn hold(s: &Server, n: usize) -> Held {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.rss_kb();
    let (devs, took) = connect_all(s, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = s.rss_kb();
    let connected = devs
        .iter()
        .filter(|d| d.state() == twinscope_proto::session::State::Connected)
        .count();
    drop(devs);
    Held {
        devices: n,
        connected,
        secs: took.as_secs_f64(),
        kb_per: after.saturating_sub(before) as f64 / connected.max(1) as f64,
        rss_mb: after as f64 / 1024.0,
    }
}

/// QoS 1 messages a second, to the last PUBACK.
async fn rate(s: &Server, devices: usize, messages: usize) -> f64 {
    let (devs, _) = connect_all(s, devices).await;
    assert_eq!(
        devs.len(),
        devices,
        "{}: not every device connected",
        s.name
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut dev in devs {
        tasks.push(tokio::spawn(async move {
            let body = vec![b'x'; 256];
            let (mut sent, mut acked, mut in_flight) = (0, 0, 0);
            while acked < messages {
                while sent < messages && in_flight < 64 {
                    let mut props = PropertyBag::default();
                    props.app.push(("site".into(), Some("building-43".into())));
                    props.app.push(("alert".into(), Some("on".into())));
                    dev.send_telemetry(Telemetry {
                        body: body.clone(),
                        props,
                        qos: None,
                    })
                    .await
                    .unwrap();
                    sent += 1;
                    in_flight += 1;
                }
                match dev.next_event().await {
                    Some(Event::TelemetryAcked(_)) => {
                        acked += 1;
                        in_flight -= 1;
                    }
                    Some(_) => {}
                    None => panic!("driver stopped"),
                }
            }
            dev.disconnect();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (devices * messages) as f64 / start.elapsed().as_secs_f64()
}

/// Twin GET round trips while every device sends one message a second.
async fn twin_rtt(s: &Server, devices: usize, secs: u64) -> (f64, f64, usize) {
    let (devs, _) = connect_all(s, devices).await;
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (i, mut dev) in devs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let sampler = i % 10 == 0;
            // Spread the devices over the second (an interval keeps the phase of its
            // creation, so it is made after the offset: otherwise all tick at once).
            tokio::time::sleep(Duration::from_millis((i as u64 * 997) % 1000)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut rtts = Vec::new();
            let mut pending: Option<(twinscope_proto::session::RequestId, Instant)> = None;
            while Instant::now() < until {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = dev.send_telemetry(Telemetry { body: br#"{"t":21.5}"#.to_vec(), props: PropertyBag::default(), qos: None }).await;
                        if sampler && pending.is_none() {
                            if let Ok(rid) = dev.get_twin().await {
                                pending = Some((rid, Instant::now()));
                            }
                        }
                    }
                    ev = dev.next_event() => match ev {
                        Some(Event::Twin { request: rid, .. }) => {
                            if let Some((want, at)) = &pending {
                                if *want == rid {
                                    rtts.push(at.elapsed());
                                    pending = None;
                                }
                            }
                        }
                        None => break,
                        _ => {}
                    }
                }
            }
            dev.disconnect();
            rtts
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (pct(0.5), pct(0.99), all.len())
}

fn stored_events(dir: &Path) -> usize {
    let store = Store::open(&dir.join("devhub.db")).unwrap();
    store
        .events(None, 0, u32::MAX)
        .map(|v| v.len())
        .unwrap_or(0)
}

fn main() {
    if let Ok(dir) = std::env::var("CAP_CHILD_DIR") {
        return child(Path::new(&dir), env("CAP_CHILD_DEVICES", 10));
    }
    let n = env("CAP_DEVICES", 10_000);
    let twin_devices = env("CAP_TWIN_DEVICES", 1_000);
    let twin_secs = env("CAP_TWIN_SECS", 10) as u64;
    let rate_devices = env("CAP_RATE_DEVICES", 20);
    let rate_messages = env("CAP_RATE_MESSAGES", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut json = Vec::new();
        let mut held = Vec::new();
        for start in [start_devhub as fn(usize) -> Server, start_mosquitto] {
            let s = start(n.max(twin_devices).max(rate_devices));
            let h = hold(&s, n).await;
            println!(
                "{:<10} held {:>6} of {:>6} connections (connected in {:.1} s), {:.1} KB each, RSS {:.0} MB",
                s.name, h.connected, h.devices, h.secs, h.kb_per, h.rss_mb
            );
            json.push(format!(
                "\"{}_connections\":{{\"devices\":{},\"connected\":{},\"connect_s\":{:.2},\"kb_per_connection\":{:.2},\"rss_mb\":{:.1}}}",
                s.name, h.devices, h.connected, h.secs, h.kb_per, h.rss_mb
            ));
            held.push(h);
        }
        let mut rates = Vec::new();
        for start in [start_devhub as fn(usize) -> Server, start_mosquitto] {
            let s = start(rate_devices);
            let r = rate(&s, rate_devices, rate_messages).await;
            let stored = if s.name == "devhub" { Some(stored_events(&s.dir)) } else { None };
            println!(
                "{:<10} QoS 1 rate {:>8.0} messages/s ({rate_devices} devices x {rate_messages} x 256 B){}",
                s.name,
                r,
                stored.map_or(String::new(), |n| format!(", {n} stored in SQLite"))
            );
            if let Some(count) = stored {
                assert_eq!(count, rate_devices * rate_messages, "devhub stored every acknowledged message");
            }
            json.push(format!("\"{}_qos1_per_s\":{:.0}", s.name, r));
            rates.push(r);
        }
        let s = start_devhub(twin_devices);
        let (p50, p99, samples) = twin_rtt(&s, twin_devices, twin_secs).await;
        drop(s);
        println!(
            "devhub     twin GET round trip p50 {p50:.2} ms, p99 {p99:.2} ms ({samples} GETs; {twin_devices} devices each sending 1 message/s)"
        );
        json.push(format!("\"devhub_twin_get_ms\":{{\"p50\":{p50:.3},\"p99\":{p99:.3},\"samples\":{samples},\"devices\":{twin_devices}}}"));
        let mem_ratio = held[0].kb_per / held[1].kb_per.max(0.001);
        let rate_ratio = rates[0] / rates[1].max(0.001);
        println!("ratios     memory per connection devhub/mosquitto {mem_ratio:.2} (target <= 2), QoS 1 rate devhub/mosquitto {rate_ratio:.2} (target >= 0.5)");
        json.push(format!("\"memory_ratio\":{mem_ratio:.3},\"rate_ratio\":{rate_ratio:.3}"));
        if let Ok(path) = std::env::var("BENCH_JSON") {
            std::fs::write(&path, format!("{{{}}}\n", json.join(","))).unwrap();
        }
    });
}
