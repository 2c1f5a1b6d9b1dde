//! `cargo xtask test`: every check and test, ending with one line `N passed, N failed`.
//!
//! Order: setup, `cargo fmt --check`, clippy (native and wasm32), the native tests of the
//! whole workspace, then the wasm-bindgen tests in headless Chromium. A check that fails
//! counts as one failure; a test run counts its tests from cargo's `test result:` lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use crate::setup::{self, Tools};
use crate::util::{describe, step, Scratch};

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    failures: Vec<String>,
}

impl Tally {
    /// A check with no test count of its own (fmt, clippy): one failure if it fails.
    fn check(&mut self, name: &str, cmd: &mut Command) {
        step(name);
        let ok = cmd.status().is_ok_and(|s| s.success());
        if !ok {
            self.failed += 1;
            self.failures.push(name.to_string());
        }
    }

    /// A check decided here: counts as one test, passed or failed.
    fn verdict(&mut self, name: &str, ok: bool) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(name.to_string());
        }
    }

    /// A test run: streams its output and adds up every `test result:` line. A run that
    /// fails without reporting a failed test (a build error, a crashed runner) counts as one.
    fn tests(&mut self, name: &str, cmd: &mut Command) {
        step(name);
        let before_failed = self.failed;
        let child = cmd.stdout(Stdio::piped()).spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                println!("could not start {}: {e}", describe(cmd));
                self.failed += 1;
                self.failures.push(name.to_string());
                return;
            }
        };
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if let Some((p, f)) = parse_result_line(&line) {
                    self.passed += p;
                    self.failed += f;
                }
            }
        }
        let ok = child.wait().is_ok_and(|s| s.success());
        if !ok && self.failed == before_failed {
            self.failed += 1;
        }
        if self.failed != before_failed {
            self.failures.push(name.to_string());
        }
    }
}

/// Reads a test runner's summary into (passed, failed): cargo's
/// `test result: ok. 12 passed; 0 failed; ...` or pytest's `== 1 failed, 4 passed in 2.1s ==`.
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    parse_cargo_line(line)
        .or_else(|| parse_plain_line(line))
        .or_else(|| parse_pytest_line(line))
}

/// The plain closing line `N passed, N failed` (the Node interop script prints it).
fn parse_plain_line(line: &str) -> Option<(u64, u64)> {
    let (p, f) = line.trim().split_once(", ")?;
    let passed = p.strip_suffix(" passed")?.parse().ok()?;
    let failed = f.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

fn parse_pytest_line(line: &str) -> Option<(u64, u64)> {
    let body = line.trim().trim_matches('=').trim();
    let (counts, time) = body.rsplit_once(" in ")?;
    if !time.trim_end().ends_with('s') {
        return None;
    }
    let (mut passed, mut failed, mut any) = (0, 0, false);
    for part in counts.split(", ") {
        let (n, word) = part.trim().split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        match word {
            "passed" => passed += n,
            "failed" | "error" | "errors" => failed += n,
            "skipped" | "deselected" | "warning" | "warnings" | "xfailed" | "xpassed" => {}
            _ => return None,
        }
        any = true;
    }
    any.then_some((passed, failed))
}

fn parse_cargo_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

pub fn run() -> ExitCode {
    let scratch = match Scratch::new("test") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xtask: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let tools: Tools = match setup::run() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xtask: setup failed: {e}");
            println!("0 passed, 1 failed");
            return ExitCode::FAILURE;
        }
    };
    let mut t = Tally::default();

    t.check(
        "cargo fmt --check",
        tools.cmd("cargo").args(["fmt", "--all", "--", "--check"]),
    );
    t.check(
        "cargo clippy (native)",
        tools.cmd("cargo").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    );
    t.check(
        "cargo clippy (wasm32, the app)",
        tools.cmd("cargo").args([
            "clippy",
            "--package",
            "twinscope",
            "--target",
            "wasm32-unknown-unknown",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    );
    t.tests(
        "native tests (cargo test --workspace)",
        tools
            .cmd("cargo")
            .args([
                "test",
                "--workspace",
                "--exclude",
                "twinscope-e2e",
                "--no-fail-fast",
            ])
            .env("MOSQUITTO", &tools.mosquitto)
            .env("TWINSCOPE_REQUIRE_MOSQUITTO", "1"),
    );
    scratch.sweep();
    t.check(
        "build devhub for the interop tests",
        tools
            .cmd("cargo")
            .args(["build", "--package", "twinscope-devhub", "--bin", "devhub"]),
    );
    t.tests(
        "interop: official Azure IoT Python SDKs against devhub (TLS on 127.0.0.1:443 and :8883)",
        tools
            .cmd(tools.python.to_str().unwrap_or("python3"))
            .args([
                "-m",
                "pytest",
                "crates/devhub/tests/interop",
                "-q",
                "-p",
                "no:warnings",
                "-p",
                "no:cacheprovider",
            ])
            .env(
                "DEVHUB_BIN",
                crate::util::root().join("target/debug/devhub"),
            ),
    );
    t.tests(
        "interop: official Azure IoT Node device SDK against devhub (TLS on 127.0.0.1:443 and :8883)",
        tools
            .cmd("node")
            .arg("crates/devhub/tests/interop/node/test.js")
            .env("DEVHUB_BIN", crate::util::root().join("target/debug/devhub")),
    );
    scratch.sweep();
    step("start devhub for the browser tests");
    let hub = match DevhubProcess::start() {
        Ok(h) => Some(h),
        Err(e) => {
            println!("could not start devhub: {e}");
            t.failed += 1;
            t.failures.push("start devhub".into());
            None
        }
    };
    if let Some(hub) = &hub {
        t.tests(
            "browser tests (wasm-bindgen-test in headless Chromium, against devhub)",
            tools
                .cmd("cargo")
                .args([
                    "test",
                    "--package",
                    "twinscope",
                    "--target",
                    "wasm32-unknown-unknown",
                    // Every test binary runs even when one fails: the count stays whole.
                    "--no-fail-fast",
                ])
                .env("CHROMEDRIVER", &tools.chromedriver)
                .env("WASM_BINDGEN_TEST_TIMEOUT", "400")
                .env("TWINSCOPE_DEVHUB_URL", &hub.url)
                .env("TWINSCOPE_DEVHUB_SERVICE", &hub.service)
                .env("TWINSCOPE_REQUIRE_DEVHUB", "1"),
        );
    }
    drop(hub);
    scratch.sweep();

    step("end to end: build the release app (trunk build --release), serve it from devhub");
    let e2e = tools.build_app().and_then(|()| {
        DevhubProcess::start_with(&["--app", "dist", "--demo"])
            .and_then(|hub| Chromedriver::start(&tools.chromedriver).map(|cd| (hub, cd)))
    });
    if e2e.is_ok() {
        // The budget of issue #12: the whole app, gzipped, at most 300 KB.
        let name = "bundle: the app (wasm + JS + CSS, gzip -9) is at most 300 KB";
        step(name);
        match crate::util::dist_sizes() {
            Ok(files) => {
                for (kind, raw, z) in &files {
                    println!("{kind:<5} {raw:>9} B raw {z:>8} B gzipped");
                }
                let total: u64 = files.iter().map(|f| f.2).sum();
                let budget = crate::util::BUNDLE_BUDGET;
                let ok = files.len() == 3 && total <= budget;
                println!(
                    "total {total} B gzipped: {} the budget of {budget} B",
                    if ok { "within" } else { "OVER" }
                );
                t.verdict(name, ok);
            }
            Err(e) => {
                println!("{e}");
                t.verdict(name, false);
            }
        }
    }
    match &e2e {
        Ok((hub, cd)) => t.tests(
            "end to end: a new user in headless Chromium through WebDriver (screenshots in docs/)",
            tools
                .cmd("cargo")
                .args([
                    "test",
                    "--package",
                    "twinscope-e2e",
                    "--",
                    "--test-threads=1",
                ])
                .env("TWINSCOPE_E2E_URL", &hub.url)
                .env("TWINSCOPE_E2E_SERVICE", &hub.service)
                .env("TWINSCOPE_E2E_WEBDRIVER", &cd.url)
                .env("TWINSCOPE_REQUIRE_E2E", "1"),
        ),
        Err(e) => {
            println!("could not set up the end-to-end test: {e}");
            t.failed += 1;
            t.failures.push("end-to-end setup".into());
        }
    }
    drop(e2e);
    scratch.sweep();

    println!();
    if !t.failures.is_empty() {
        println!("failed: {}", t.failures.join("; "));
    }
    println!("{} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// devhub on an ephemeral loopback port, in memory, stopped on drop.
pub(crate) struct DevhubProcess {
    child: std::process::Child,
    pub(crate) url: String,
    pub(crate) service: String,
}

impl DevhubProcess {
    /// devhub for the browser tests: their pages are served by wasm-bindgen-test-runner
    /// on a port of its own, so that origin is allowed.
    fn start() -> Result<DevhubProcess, String> {
        DevhubProcess::start_with(&["--allow-origin", "http://127.0.0.1:*"])
    }

    fn start_with(extra: &[&str]) -> Result<DevhubProcess, String> {
        let bin = crate::util::root().join("target/debug/devhub");
        let mut args = vec!["--in-memory"];
        args.extend_from_slice(extra);
        DevhubProcess::start_bin(&bin, &args)
    }

    /// `bin serve --listen 127.0.0.1:0 --quiet` with `extra` arguments.
    pub(crate) fn start_bin(
        bin: &std::path::Path,
        extra: &[&str],
    ) -> Result<DevhubProcess, String> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--quiet"])
            .args(extra)
            .current_dir(crate::util::root())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let (mut url, mut service) = (None, None);
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(s) = line.strip_prefix("devhub: service      ") {
                service = Some(s.to_string());
            }
            if let Some(s) = line.strip_prefix("devhub: listening    ") {
                url = s
                    .split(' ')
                    .next()
                    .map(|u| u.trim_end_matches('/').to_string());
                break;
            }
        }
        // Keep reading so devhub never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        match (url, service) {
            (Some(url), Some(service)) => {
                println!("devhub at {url}");
                Ok(DevhubProcess {
                    child,
                    url,
                    service,
                })
            }
            _ => {
                let _ = child.kill();
                Err("devhub did not print its address".into())
            }
        }
    }
}

impl Drop for DevhubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free loopback port, stopped on drop.
struct Chromedriver {
    child: std::process::Child,
    url: String,
}

impl Chromedriver {
    fn start(bin: &std::path::Path) -> Result<Chromedriver, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Chromedriver { child, url });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let mut c = Chromedriver { child, url };
        let _ = c.child.kill();
        Err("chromedriver did not start listening".into())
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_result_line;

    #[test]
    fn reads_cargo_and_wasm_bindgen_result_lines() {
        assert_eq!(
            parse_result_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"),
            Some((12, 0))
        );
        assert_eq!(
            parse_result_line("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_result_line("running 3 tests"), None);
        assert_eq!(parse_result_line("5 passed in 0.65s"), Some((5, 0)));
        assert_eq!(
            parse_result_line("===== 1 failed, 4 passed, 6 warnings in 2.10s ====="),
            Some((4, 1))
        );
        assert_eq!(parse_result_line("2 passed, 1 error in 1.0s"), Some((2, 1)));
        assert_eq!(parse_result_line("devhub: listening in http"), None);
        assert_eq!(parse_result_line("3 passed, 0 failed"), Some((3, 0)));
        assert_eq!(parse_result_line("2 passed, 1 failed"), Some((2, 1)));
    }
}
