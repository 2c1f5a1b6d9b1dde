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
  bench   run the benchmarks and print their numbers (BENCH_MS=ms per case, default 700)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run().map(|_| ()),
        Some("build") => build(),
        Some("serve") => serve(&args[1..]),
        Some("test") => return test::run(),
        Some("bench") => bench(),
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
    util::run(tools.cmd("trunk").args(["build", "--release"]))?;
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
    util::run(tools.cmd("trunk").args(["build", "--release"]))?;
    util::step("build devhub (release: cargo build --profile devhub)");
    util::run(tools.cmd("cargo").args([
        "build",
        "--profile",
        "devhub",
        "--package",
        "twinscope-devhub",
        "--bin",
        "devhub",
    ]))?;
    let devhub = util::root().join("target/devhub/devhub");
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

/// `cargo xtask bench`: every benchmark, printing numbers (no pass/fail).
fn bench() -> Result<(), String> {
    util::step("codec throughput (crates/proto/benches/codec.rs)");
    util::run(
        std::process::Command::new("cargo")
            .args(["bench", "--package", "twinscope-proto", "--bench", "codec"])
            .current_dir(util::root()),
    )?;
    util::step("devhub under load (crates/native/benches/devhub_load.rs; DEVICES, MESSAGES)");
    util::run(
        std::process::Command::new("cargo")
            .args([
                "bench",
                "--package",
                "twinscope-native",
                "--bench",
                "devhub_load",
            ])
            .current_dir(util::root()),
    )
}
