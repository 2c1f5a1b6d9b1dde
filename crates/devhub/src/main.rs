//! `devhub`: a local Azure IoT Hub.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use twinscope_devhub::guard::{exposure_warning, Exposure};
use twinscope_devhub::http::{router, HttpConfig};
use twinscope_devhub::hub::dps::DpsConfig;
use twinscope_devhub::hub::{generate_key, Hub, HubConfig};
use twinscope_devhub::net::{now_ms, ticker, Limits, Shared};
use twinscope_devhub::rest::{AuthenticationRequest, IdentityRequest, SymmetricKeys};
use twinscope_devhub::store::{Retention, Store};
use twinscope_devhub::tls;
use twinscope_proto::iothub::{sas, DeviceId, Identity, SymmetricKey};

#[derive(Parser)]
#[command(
    name = "devhub",
    version,
    about = "A local Azure IoT Hub: device MQTT over WebSocket, service REST API, SQLite store, fault injection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub.
    Serve(Box<ServeArgs>),
    /// Print a SAS token exactly as the official SDKs make it.
    Sas {
        /// The resource URI, e.g. myhub.azure-devices.net/devices/dev-01.
        #[arg(long)]
        resource: String,
        /// The base64 key.
        #[arg(long)]
        key: String,
        /// Expiry, seconds since 1970.
        #[arg(long)]
        expiry: u64,
        /// Policy name (skn), for policy tokens.
        #[arg(long)]
        policy: Option<String>,
    },
}

#[derive(Parser)]
struct ServeArgs {
    /// HTTP: the REST API and MQTT over WebSocket at /$iothub/websocket.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// HTTPS and WSS (as on the hub's port 443), with the certificate from --tls-dir.
    #[arg(long)]
    tls_listen: Option<SocketAddr>,
    /// MQTT over TLS (as on the hub's port 8883).
    #[arg(long)]
    mqtt_tls_listen: Option<SocketAddr>,
    /// Where the CA (DIR/ca.pem) and server certificate live; created on first use
    /// [default: next to the store, or a temporary folder with --in-memory].
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// The HostName that tokens and user names must name.
    #[arg(long, default_value = "localhost")]
    hub_name: String,
    /// SQLite database file [default: $XDG_DATA_HOME/twinscope/devhub.sqlite].
    #[arg(long, conflicts_with = "in_memory")]
    data: Option<PathBuf>,
    /// Keep everything in memory (gone when devhub stops).
    #[arg(long)]
    in_memory: bool,
    /// The iothubowner policy key (base64); generated and stored when absent.
    #[arg(long)]
    owner_key: Option<String>,
    /// Create this device if missing: ID or ID:KEY (repeatable).
    #[arg(long = "device", value_name = "ID[:KEY]")]
    devices: Vec<String>,
    /// Serve the built web app from this directory at /.
    #[arg(long)]
    app: Option<PathBuf>,
    /// Create a demo device and serve its connection string at GET /devhub/demo.
    #[arg(long)]
    demo: bool,
    /// Do not log connection closes.
    #[arg(long)]
    quiet: bool,
    /// The Device Provisioning Service ID scope devhub answers to (DPS runs on the same
    /// listeners as the hub).
    #[arg(long, default_value = "0ne00DEVHUB")]
    id_scope: String,
    /// A DPS enrollment group with symmetric keys: NAME or NAME:KEY (the key is generated
    /// and stored when absent; repeatable). --demo adds the group demo-group.
    #[arg(long = "dps-group", value_name = "NAME[:KEY]")]
    dps_groups: Vec<String>,
    /// A DPS individual enrollment: REGISTRATION_ID:KEY (repeatable).
    #[arg(long = "dps-device", value_name = "REGID:KEY")]
    dps_devices: Vec<String>,
    /// Let web pages at this origin (e.g. http://127.0.0.1:3000, or http://127.0.0.1:* for
    /// any port) call devhub; by default only the page devhub serves may (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Answer to this host name too (besides localhost, IP addresses and --hub-name);
    /// requests naming any other host are refused (repeatable).
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// Telemetry messages kept per device (the oldest are dropped first).
    #[arg(long, default_value_t = Retention::default().per_device)]
    keep_events_per_device: u32,
    /// Telemetry messages kept in all (the oldest are dropped first).
    #[arg(long, default_value_t = Retention::default().total)]
    keep_events: u32,
    /// Device connections at once (WebSocket and MQTT/TLS); more are refused and logged.
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// The largest WebSocket message accepted, in bytes; a bigger one closes the
    /// connection. Clients that pack many packets into one message (MQTT.js publishing in
    /// a burst does) may need more than the default.
    #[arg(long, default_value_t = Limits::default().max_ws_message)]
    max_ws_message: usize,
}

fn default_data() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("twinscope/devhub.sqlite")
}

const DEMO_DEVICE: &str = "demo-device";
const DEMO_GROUP: &str = "demo-group";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sas {
            resource,
            key,
            expiry,
            policy,
        } => match SymmetricKey::from_base64(&key) {
            Ok(k) => {
                println!(
                    "{}",
                    sas::build_token(&resource, &k, expiry, policy.as_deref())
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("devhub: --key is not valid base64 ({e})");
                ExitCode::from(2)
            }
        },
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("devhub: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let (store, where_) = if args.in_memory {
        (Store::in_memory(), "in memory".to_string())
    } else {
        let path = args.data.clone().unwrap_or_else(default_data);
        (Store::open(&path), path.display().to_string())
    };
    let mut store = store.map_err(|e| format!("cannot open the store ({where_}): {e}"))?;
    store.set_retention(Retention {
        per_device: args.keep_events_per_device.max(1),
        total: args.keep_events.max(1),
    });
    let owner_key = match (
        &args.owner_key,
        store.setting("owner_key").map_err(|e| e.to_string())?,
    ) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => k,
        (None, None) => generate_key(),
    };
    let owner = SymmetricKey::from_base64(&owner_key)
        .map_err(|e| format!("--owner-key is not valid base64 ({e})"))?;
    store
        .set_setting("owner_key", &owner_key)
        .map_err(|e| e.to_string())?;

    let mut hub = Hub::new(
        HubConfig {
            hub_name: args.hub_name.clone(),
            owner_key: owner,
            c2d_ttl_ms: 3_600_000,
            c2d_lock_ms: 60_000,
        },
        store,
    );
    let now = now_ms();
    let mut devices: Vec<(String, Option<String>)> = Vec::new();
    for d in &args.devices {
        let (id, key) = match d.split_once(':') {
            Some((id, key)) => (id.to_string(), Some(key.to_string())),
            None => (d.clone(), None),
        };
        devices.push((id, key));
    }
    if args.demo {
        devices.push((DEMO_DEVICE.to_string(), None));
    }
    for (id, key) in &devices {
        DeviceId::new(id.as_str()).map_err(|e| format!("--device {id}: {e}"))?;
        let exists = hub
            .store()
            .identity(id, None)
            .map_err(|e| e.to_string())?
            .is_some();
        if !exists || key.is_some() {
            let req = IdentityRequest {
                status: None,
                authentication: Some(AuthenticationRequest {
                    symmetric_key: Some(SymmetricKeys {
                        primary_key: key.clone(),
                        secondary_key: None,
                    }),
                }),
            };
            let if_match = exists.then_some("*");
            hub.put_identity(id, None, &req, if_match, now)
                .map_err(|e| format!("--device {id}: {}", e.message))?;
        }
    }

    // DPS: the ID scope and the enrollments.
    hub.set_dps(DpsConfig {
        id_scope: args.id_scope.clone(),
        ..DpsConfig::default()
    });
    let mut groups: Vec<(String, Option<String>)> = args
        .dps_groups
        .iter()
        .map(|g| match g.split_once(':') {
            Some((n, k)) => (n.to_string(), Some(k.to_string())),
            None => (g.clone(), None),
        })
        .collect();
    if args.demo {
        groups.push((DEMO_GROUP.to_string(), None));
    }
    for (name, key) in &groups {
        let setting = format!("dps_group:{name}");
        let key = match (
            key,
            hub.store().setting(&setting).map_err(|e| e.to_string())?,
        ) {
            (Some(k), _) => k.clone(),
            (None, Some(k)) => k,
            (None, None) => generate_key(),
        };
        let k = SymmetricKey::from_base64(&key)
            .map_err(|e| format!("--dps-group {name}: the key is not valid base64 ({e})"))?;
        hub.store()
            .set_setting(&setting, &key)
            .map_err(|e| e.to_string())?;
        hub.enroll_group(name, k);
    }
    for d in &args.dps_devices {
        let Some((reg, key)) = d.split_once(':') else {
            return Err(format!("--dps-device {d}: write REGISTRATION_ID:KEY"));
        };
        twinscope_proto::provisioning::check_registration_id(reg)
            .map_err(|e| format!("--dps-device {reg}: {e}"))?;
        let k = SymmetricKey::from_base64(key)
            .map_err(|e| format!("--dps-device {reg}: the key is not valid base64 ({e})"))?;
        hub.enroll_individual(reg, k);
    }

    println!("devhub: hub name     {}", args.hub_name);
    println!("devhub: store        {where_}");
    println!("devhub: service      {}", hub.service_connection_string());
    for (id, _) in &devices {
        let ident = Identity::device(DeviceId::new(id.as_str()).map_err(|e| e.to_string())?);
        if let Ok(Some(cs)) = hub.connection_string(&ident, None) {
            println!("devhub: device       {cs}");
        }
    }
    println!("devhub: id scope     {}", args.id_scope);
    for (name, _) in &groups {
        if let Some(k) = hub.enrollment_group(name) {
            println!("devhub: dps group    {name} (key {})", k.to_base64());
        }
    }
    for d in &args.dps_devices {
        if let Some((reg, _)) = d.split_once(':') {
            println!("devhub: dps device   {reg}");
        }
    }

    // An in-memory hub's certificates live as long as it does (removed when it stops).
    let mut temp_tls = None;
    let tls_files = if args.tls_listen.is_some() || args.mqtt_tls_listen.is_some() {
        let dir = args
            .tls_dir
            .clone()
            .unwrap_or_else(|| match (&args.data, args.in_memory) {
                (_, true) => {
                    let d = std::env::temp_dir().join(format!("devhub-tls-{}", std::process::id()));
                    temp_tls = Some(d.clone());
                    d
                }
                (Some(p), false) => p
                    .parent()
                    .map(|d| d.join("tls"))
                    .unwrap_or_else(|| PathBuf::from("tls")),
                (None, false) => default_data()
                    .parent()
                    .map(|d| d.join("tls"))
                    .unwrap_or_else(|| PathBuf::from("tls")),
            });
        let files = tls::ensure_files(&dir, &args.hub_name)?;
        println!("devhub: CA           {}", files.ca.display());
        Some(files)
    } else {
        None
    };
    let limits = Limits {
        max_connections: args.max_connections,
        max_ws_message: args.max_ws_message.max(1024),
        ..Limits::default()
    };
    let shared = Shared::with_limits(hub, !args.quiet, limits);
    let cfg = HttpConfig {
        demo_device: args.demo.then(|| DEMO_DEVICE.to_string()),
        app_dir: args.app.clone(),
        exposure: Exposure::new(&args.hub_name, &args.allow_hosts, &args.allow_origins),
    };
    for addr in [Some(args.listen), args.tls_listen, args.mqtt_tls_listen]
        .into_iter()
        .flatten()
    {
        if let Some(w) = exposure_warning(&addr) {
            eprintln!("devhub: WARNING      {w}");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("devhub: listening    http://{addr}/ (REST, MQTT over WebSocket at ws://{addr}/$iothub/websocket)");
        if args.app.is_some() {
            println!("devhub: app          http://{addr}/");
        }
        tokio::spawn(ticker(shared.clone()));
        let app = router(shared.clone(), cfg);
        if let (Some(addr), Some(files)) = (args.tls_listen, &tls_files) {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let cfg = tls::server_config(files, &[b"http/1.1"])?;
            println!("devhub: listening    https://{}/ (REST, MQTT over WebSocket at wss://{}/$iothub/websocket)", l.local_addr().map_err(|e| e.to_string())?, l.local_addr().map_err(|e| e.to_string())?);
            tokio::spawn(tls::serve_https(l, cfg, app.clone(), shared.clone()));
        }
        if let (Some(addr), Some(files)) = (args.mqtt_tls_listen, &tls_files) {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let cfg = tls::server_config(files, &[])?;
            println!("devhub: listening    mqtts://{} (MQTT over TLS)", l.local_addr().map_err(|e| e.to_string())?);
            tokio::spawn(tls::serve_mqtt_tls(l, cfg, shared.clone()));
        }
        // No Nagle delay: a device waits on each small answer (CONNACK, twin, PUBACK).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    if let Some(dir) = temp_tls {
        let _ = std::fs::remove_dir_all(dir);
    }
    served
}
