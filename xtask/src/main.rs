//! `cargo xtask`: the project's one entry point for setup, build, serve and test.
//!
//! Standard library only, so that it builds in seconds on a fresh machine.

mod setup;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup   install what is missing (wasm target, trunk, wasm-bindgen-cli, wasm-opt, chromium)
  build   setup, then build the release web app into dist/
  serve   build the app and run devhub (demo device) serving it on http://127.0.0.1:8080/
  test    setup, fmt, clippy, native tests, browser tests; ends with `N passed, N failed`
  bench   run the benchmarks and print their numbers (BENCH_MS=ms per case, default 700);
          `bench codec browser` runs only the parts named (bundle, codec, capacity, browser)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run().map(|_| ()),
        Some("build") => build(),
        Some("serve") => serve(&args[1..]),
        Some("test") => return test::run(),
        Some("bench") => bench(&args[1..]),
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            if let Some(cmd) = other {
                eprintln!("xtask: unknown command {cmd:?}\n");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask build`: the release app in dist/.
fn build() -> Result<(), String> {
    let tools = setup::run()?;
    util::step("build the web app (trunk build --release)");
    tools.build_app()?;
    let dist = util::root().join("dist");
    println!("built the app into {}", dist.display());
    Ok(())
}

/// `cargo xtask serve`: build the app, then run devhub with a demo device, serving the
/// app from it, on 127.0.0.1.
fn serve(args: &[String]) -> Result<(), String> {
    let port = match args {
        [] => "8080".to_string(),
        [flag, p] if flag == "--port" => p.clone(),
        _ => return Err("usage: cargo xtask serve [--port PORT]".into()),
    };
    let tools = setup::run()?;
    util::step("build the web app (trunk build --release)");
    tools.build_app()?;
    util::step("build devhub (release: cargo build --profile devhub)");
    let devhub = build_devhub(&tools)?;
    util::step("run devhub with a demo device (Ctrl-C stops it)");
    println!("twinscope: open http://127.0.0.1:{port}/ (devhub serves the app and is its hub)");
    util::run(tools.cmd(devhub.to_str().unwrap_or("devhub")).args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--demo",
        "--app",
        "dist",
    ]))
}

/// `cargo xtask bench`: every benchmark, printing numbers (no pass/fail), and their
/// results together in target/bench.json.
const BENCH_PARTS: [&str; 4] = ["bundle", "codec", "capacity", "browser"];

fn bench(only: &[String]) -> Result<(), String> {
    if let Some(bad) = only.iter().find(|p| !BENCH_PARTS.contains(&p.as_str())) {
        return Err(format!(
            "unknown benchmark {bad:?}: name any of {}",
            BENCH_PARTS.join(", ")
        ));
    }
    let runs = |part: &str| only.is_empty() || only.iter().any(|p| p == part);
    let _scratch = util::Scratch::new("bench")?;
    let tools = setup::run()?;
    let out = util::root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;

    if runs("bundle") {
        util::step("bundle: build the release app (trunk build --release)");
        tools.build_app()?;
        let bundle = bench_bundle(&tools)?;
        std::fs::write(out.join("bundle.json"), &bundle).map_err(|e| e.to_string())?;
    }
    if runs("codec") {
        util::step("codec against mqttbytes (crates/proto/benches/codec.rs)");
        util::run(
            tools
                .cmd("cargo")
                .args(["bench", "--package", "twinscope-proto", "--bench", "codec"])
                .env("BENCH_JSON", out.join("codec.json")),
        )?;
    }
    if runs("capacity") {
        util::step("devhub beside mosquitto (crates/native/benches/capacity.rs; CAP_* variables)");
        util::run(
            tools
                .cmd("cargo")
                .args([
                    "bench",
                    "--package",
                    "twinscope-native",
                    "--bench",
                    "capacity",
                ])
                .env("BENCH_JSON", out.join("capacity.json")),
        )?;
    }
    if runs("browser") {
        util::step("browser throughput: ours, MQTT.js and a raw WebSocket in headless Chromium (tests/throughput.rs)");
        let browser = bench_browser(&tools);
        std::fs::write(out.join("browser.json"), &browser).map_err(|e| e.to_string())?;
    }

    // target/bench.json: every part's latest result (a part not run this time keeps the
    // result of its last run, if any).
    let mut parts = Vec::new();
    for name in BENCH_PARTS {
        match std::fs::read_to_string(out.join(format!("{name}.json"))) {
            Ok(text) => parts.push(format!("\"{name}\":{}", text.trim())),
            Err(e) if runs(name) => return Err(format!("{name}.json: {e}")),
            Err(_) => {}
        }
    }
    let all = util::root().join("target/bench.json");
    std::fs::write(&all, format!("{{{}}}\n", parts.join(","))).map_err(|e| e.to_string())?;
    println!("wrote {}", all.display());
    Ok(())
}

/// Builds devhub as `serve` and the benchmarks run it (optimised for speed); returns its path.
fn build_devhub(tools: &setup::Tools) -> Result<std::path::PathBuf, String> {
    util::run(tools.cmd("cargo").args([
        "build",
        "--profile",
        "devhub",
        "--package",
        "twinscope-devhub",
        "--bin",
        "devhub",
    ]))?;
    Ok(util::root().join("target/devhub/devhub"))
}

/// The browser throughput benchmark against the sink and against devhub, one Chromium run
/// each; a run that fails is reported in the JSON and does not stop the others.
fn bench_browser(tools: &setup::Tools) -> String {
    use std::io::BufRead;
    let root = util::root();
    let key = "YmVuY2gta2V5LWZvci10aHJvdWdocHV0";
    let built = util::run(tools.cmd("cargo").args([
        "build",
        "--release",
        "--package",
        "twinscope-native",
        "--example",
        "mqtt_sink",
    ]))
    .and_then(|()| build_devhub(tools).map(|_| ()));
    if let Err(e) = built {
        return format!("{{\"error\":{}}}", json_string(&e));
    }
    let mut sink = match std::process::Command::new(root.join("target/release/examples/mqtt_sink"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return format!("{{\"error\":{}}}", json_string(&format!("mqtt_sink: {e}"))),
    };
    let mut line = String::new();
    if let Some(out) = sink.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let sink_url = line.trim().strip_prefix("SINK ").unwrap_or("").to_string();
    let data = std::env::temp_dir().join(format!("twinscope-bench-{}", std::process::id()));
    let db = data.join("devhub.db");
    let devices: Vec<String> = ["bench-ours", "bench-mqttjs", "bench-raw"]
        .iter()
        .map(|d| format!("{d}:{key}"))
        .collect();
    let mut args: Vec<&str> = vec![
        "--data",
        db.to_str().unwrap_or("devhub.db"),
        "--allow-origin",
        "http://127.0.0.1:*",
        "--keep-events-per-device",
        "1000000",
        "--keep-events",
        "10000000",
        // MQTT.js packs a burst of publishes into WebSocket messages of several MB.
        "--max-ws-message",
        "67108864",
    ];
    for d in &devices {
        args.extend(["--device", d.as_str()]);
    }
    let hub = test::DevhubProcess::start_bin(&root.join("target/devhub/devhub"), &args);
    let mut runs = Vec::new();
    match &hub {
        Ok(hub) => {
            let devhub_ws = format!(
                "{}/$iothub/websocket",
                hub.url.replacen("http://", "ws://", 1)
            );
            for server in ["sink", "devhub"] {
                let out = tools
                    .cmd("cargo")
                    .args([
                        "test",
                        "--release",
                        "--package",
                        "twinscope",
                        "--target",
                        "wasm32-unknown-unknown",
                        "--features",
                        "bench-browser",
                        "--test",
                        "throughput",
                        "--",
                        "--nocapture",
                    ])
                    .env("CHROMEDRIVER", &tools.chromedriver)
                    // A run that stalls (the devhub run does, for now) gives up after 5 minutes.
                    .env("WASM_BINDGEN_TEST_TIMEOUT", "300")
                    .env("TWINSCOPE_BENCH_DEVHUB_WS", &devhub_ws)
                    .env("TWINSCOPE_BENCH_SINK_WS", &sink_url)
                    .env("TWINSCOPE_BENCH_HOST", "localhost")
                    .env("TWINSCOPE_BENCH_KEY", key)
                    .env("TWINSCOPE_BENCH_SERVERS", server)
                    .env("TWINSCOPE_BENCH_DEVHUB_REST", &hub.url)
                    .env("TWINSCOPE_BENCH_SERVICE", &hub.service)
                    .output();
                let text = out
                    .as_ref()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default();
                for l in text
                    .lines()
                    .filter(|l| l.contains(" qos") && l.contains("ours"))
                {
                    println!("{l}");
                }
                match text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("BENCH-JSON "))
                {
                    Some(j) => runs.push(j.to_string()),
                    None => {
                        let why = format!("the {server} run reported no result (see cargo test --release -p twinscope --features bench-browser --test throughput)");
                        println!("{why}");
                        runs.push(format!(
                            "{{\"server\":\"{server}\",\"error\":{}}}",
                            json_string(&why)
                        ));
                    }
                }
            }
        }
        Err(e) => runs.push(format!("{{\"error\":{}}}", json_string(e))),
    }
    drop(hub);
    drop(sink.stdin.take());
    let _ = sink.kill();
    let _ = sink.wait();
    let _ = std::fs::remove_dir_all(&data);
    format!("[{}]", runs.join(","))
}

/// Sizes of dist/ (raw and gzip -9), MQTT.js's browser bundle beside them, and the ten
/// biggest items of the wasm (twiggy, on the build before wasm-opt, which keeps names).
fn bench_bundle(tools: &setup::Tools) -> Result<String, String> {
    let root = util::root();
    let files = util::dist_sizes()?;
    let total: u64 = files.iter().map(|f| f.2).sum();
    println!("{:<28} {:>10} {:>10}", "bundle", "raw B", "gzip B");
    for (k, raw, z) in &files {
        println!("{:<28} {raw:>10} {z:>10}", format!("twinscope {k}"));
    }
    println!("{:<28} {:>10} {total:>10}", "twinscope total", "");
    let peer_dir = root.join("bench");
    if !peer_dir.join("node_modules/mqtt/dist/mqtt.min.js").exists() {
        util::run(
            tools
                .cmd("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&peer_dir),
        )?;
    }
    let (peer_raw, peer_z) = util::gzip_size(&peer_dir.join("node_modules/mqtt/dist/mqtt.min.js"))?;
    println!(
        "{:<28} {peer_raw:>10} {peer_z:>10}",
        "peer: MQTT.js mqtt.min.js"
    );
    println!(
        "budget 300 KB gzipped: {} ({:.1} KB); target 200 KB",
        if total <= util::BUNDLE_BUDGET {
            "within"
        } else {
            "OVER"
        },
        total as f64 / 1024.0
    );
    if util::output(tools.cmd("twiggy").arg("--version")).is_none() {
        util::run(tools.cmd("cargo").args(["install", "twiggy", "--locked"]))?;
    }
    let wasm = root.join("target/app/wasm32-unknown-unknown/release/twinscope.wasm");
    let csv = util::output(
        tools
            .cmd("twiggy")
            .args(["top", "-n", "40", "-f", "csv"])
            .arg(&wasm),
    )
    .ok_or("twiggy failed")?;
    let mut top = Vec::new();
    println!("ten biggest wasm items before wasm-opt (twiggy top, sections left out):");
    // Custom sections (names, wasm-bindgen's) are stripped from the shipped file.
    let items = csv.lines().skip(1).filter(|l| !l.contains("section"));
    for line in items.take(10) {
        let mut cols = line.rsplitn(5, ',');
        let (_, _, _, bytes, name) = (
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
            cols.next(),
        );
        let (Some(bytes), Some(name)) = (bytes, name) else {
            continue;
        };
        println!(
            "  {bytes:>8}  {}",
            name.chars().take(100).collect::<String>()
        );
        top.push(format!(
            "{{\"item\":{},\"bytes\":{bytes}}}",
            json_string(name.trim_matches('"'))
        ));
    }
    let fields: Vec<String> = files
        .iter()
        .map(|(k, raw, z)| format!("\"{k}\":{{\"raw\":{raw},\"gzip\":{z}}}"))
        .collect();
    Ok(format!(
        "{{{},\"total_gzip\":{total},\"budget_gzip\":{},\"peer_mqttjs\":{{\"raw\":{peer_raw},\"gzip\":{peer_z}}},\"twiggy_top\":[{}]}}",
        fields.join(","),
        util::BUNDLE_BUDGET,
        top.join(",")
    ))
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}
