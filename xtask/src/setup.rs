//! `cargo xtask setup`: install what is missing and nothing else, saying what it did.
//!
//! Everything the build and the tests need, and how it is installed on these machines
//! (see ../shared/design/ARCHITECTURE.md, "Tools and their quirks"):
//! - the `wasm32-unknown-unknown` target (rustup);
//! - trunk 0.21.14 (cargo install --locked; 0.22 needs a newer rustc);
//! - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock;
//! - wasm-opt 132 from the npm package binaryen@132, into tools/ (ignored by git);
//! - Debian's chromium, chromium-driver and mosquitto (apt-get when root, else the
//!   command to run);
//! - a Python virtual environment `.venv` with the official Azure IoT SDKs
//!   (crates/devhub/tests/interop/requirements.txt);
//! - the official Azure IoT Node device SDK (crates/devhub/tests/interop/node, `npm ci`).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, output, run as run_cmd, step};

pub const TRUNK_VERSION: &str = "0.21.14";
pub const BINARYEN_VERSION: &str = "132";
/// terser, which minifies the app's JavaScript glue (about 1.7 KB gzipped).
pub const TERSER_VERSION: &str = "5.51.4";
/// The nightly toolchain that builds the shipped app: it rebuilds the standard library for
/// size, with panics that abort at once (no panic messages or locations in the wasm). This
/// takes about 25 KB off the gzipped app (docs/benchmarks.md, section 1). Tests and tools
/// build with stable.
pub const APP_NIGHTLY: &str = "nightly-2026-05-19";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const APT_PACKAGES: &[(&str, &str)] = &[
    // (program that must be on PATH, Debian package that provides it)
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    // The MQTT broker the codec's conformance test talks to.
    ("mosquitto", "mosquitto"),
];

/// The tools that setup found or installed, with the PATH that finds them.
pub struct Tools {
    path: OsString,
    /// The Python interpreter of the interop tests' virtual environment.
    pub python: PathBuf,
    pub chromedriver: PathBuf,
    pub mosquitto: PathBuf,
}

impl Tools {
    /// A command for `program` with the PATH that finds every installed tool.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", &self.path).current_dir(util::root());
        c
    }

    /// The shipped app in dist/: `trunk build --release`, built by [`APP_NIGHTLY`] with the
    /// standard library rebuilt for size, in its own target directory (target/app) so that
    /// it does not evict the stable builds; then its JavaScript glue minified.
    pub fn build_app(&self) -> Result<(), String> {
        util::run(&mut self.trunk_release())?;
        util::run(
            self.cmd("node")
                .args(["--input-type=module", "-e", MINIFY_JS])
                .arg(util::root().join("dist"))
                .arg(util::root().join("tools/node_modules")),
        )
    }

    fn trunk_release(&self) -> Command {
        let mut c = self.cmd("trunk");
        c.args(["build", "--release"])
            .env("RUSTUP_TOOLCHAIN", APP_NIGHTLY)
            .env("CARGO_TARGET_DIR", util::root().join("target/app"))
            .env("CARGO_UNSTABLE_BUILD_STD", "std,panic_abort")
            .env("CARGO_UNSTABLE_BUILD_STD_FEATURES", "optimize_for_size")
            // Replaces .cargo/config.toml's wasm32 rustflags, so it repeats erase_components.
            // Each flag's saving is in docs/benchmarks.md (section 1). `-Zfmt-debug=none`
            // makes `{:?}` write nothing: the app quotes with `twinscope_proto::text::Quoted`,
            // and crates/e2e/tests/shipped_text.rs keeps Debug formats out of its code.
            .env(
                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
                "--cfg erase_components -Zunstable-options -Cpanic=immediate-abort \
                 -Zfmt-debug=none -Zlocation-detail=none -Cllvm-args=-inline-threshold=0",
            );
        c
    }
}

/// Minifies dist/'s JavaScript (the wasm-bindgen glue) with terser, and updates the
/// file's subresource-integrity hash in dist/index.html to match. Arguments: dist/, and
/// the node_modules that holds terser.
const MINIFY_JS: &str = r#"
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
const [dist, modules] = process.argv.slice(1);
const { minify } = createRequire(path.join(modules, 'x.js'))('terser');
const sri = (text) => 'sha384-' + crypto.createHash('sha384').update(text).digest('base64');
const index = path.join(dist, 'index.html');
let html = fs.readFileSync(index, 'utf8');
for (const name of fs.readdirSync(dist).filter((f) => f.endsWith('.js'))) {
  const file = path.join(dist, name);
  const src = fs.readFileSync(file, 'utf8');
  const out = await minify(src, { module: true, compress: true, mangle: true });
  if (!html.includes(sri(src))) throw new Error(`dist/index.html has no integrity hash for ${name}`);
  html = html.replace(sri(src), sri(out.code));
  fs.writeFileSync(file, out.code);
  console.log(`minified ${name}: ${src.length} -> ${out.code.length} bytes`);
}
fs.writeFileSync(index, html);
"#;

/// Checks every tool, installs the missing ones, and returns how to run them.
pub fn run() -> Result<Tools, String> {
    step("setup: check tools");
    let root = util::root();
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo/bin"));
    let npm_bin = root.join("tools/node_modules/.bin");
    let mut dirs = vec![npm_bin.clone(), cargo_bin];
    dirs.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    // Debian installs mosquitto in /usr/sbin, which a non-root PATH may lack.
    dirs.push(PathBuf::from("/usr/sbin"));
    let path = env::join_paths(&dirs).map_err(|e| format!("bad PATH: {e}"))?;
    let find = |program: &str| find_in(&dirs, program);
    let probe = |program: &str, args: &[&str]| {
        find(program).and_then(|p| output(Command::new(p).args(args)))
    };
    let mut did = Vec::new();

    // 1. The wasm target.
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .ok_or("rustup is not available: install Rust with rustup (https://rustup.rs)")?;
    if targets.lines().any(|l| l.trim() == WASM_TARGET) {
        ok(&format!("rust target {WASM_TARGET}"));
    } else {
        run_cmd(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
        did.push(format!("added rust target {WASM_TARGET}"));
    }

    // 1b. The pinned nightly with the standard library's source, for the shipped app.
    let nightlies = output(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    if nightlies.lines().any(|l| l.starts_with(APP_NIGHTLY))
        && output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            APP_NIGHTLY,
        ]))
        .is_some_and(|c| c.lines().any(|l| l.starts_with("rust-src")))
    {
        ok(&format!(
            "{APP_NIGHTLY} with rust-src (builds the shipped app)"
        ));
    } else {
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            APP_NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        did.push(format!(
            "installed {APP_NIGHTLY} with rust-src (builds the shipped app)"
        ));
    }

    // 2. trunk.
    let want = format!("trunk {TRUNK_VERSION}");
    if probe("trunk", &["--version"]).as_deref() == Some(want.as_str()) {
        ok(&want);
    } else {
        run_cmd(Command::new("cargo").args([
            "install",
            "--locked",
            "trunk",
            "--version",
            TRUNK_VERSION,
        ]))?;
        did.push(format!("installed {want}"));
    }

    // 3. wasm-bindgen-cli, matching Cargo.lock.
    let wb = wasm_bindgen_version(&root)?;
    let want = format!("wasm-bindgen {wb}");
    let have_cli = probe("wasm-bindgen", &["--version"]).as_deref() == Some(want.as_str());
    let have_runner =
        probe("wasm-bindgen-test-runner", &["--version"]).is_some_and(|v| v.ends_with(&wb));
    if have_cli && have_runner {
        ok(&format!("wasm-bindgen-cli {wb}"));
    } else {
        let locked = Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--force",
                "wasm-bindgen-cli",
                "--version",
                &wb,
            ])
            .status();
        if !locked.is_ok_and(|s| s.success()) {
            // The registry mirror may lack a locked dependency: resolve afresh.
            println!("cargo install --locked failed; retrying without --locked");
            run_cmd(Command::new("cargo").args([
                "install",
                "--force",
                "wasm-bindgen-cli",
                "--version",
                &wb,
            ]))?;
        }
        did.push(format!("installed wasm-bindgen-cli {wb}"));
    }

    // 4. wasm-opt from the npm package binaryen.
    let wasm_opt = npm_bin.join("wasm-opt");
    let have = output(Command::new(&wasm_opt).arg("--version"))
        .is_some_and(|v| v.contains(&format!("version {BINARYEN_VERSION}")));
    let terser = output(Command::new(npm_bin.join("terser")).arg("--version"))
        .is_some_and(|v| v.trim() == format!("terser {TERSER_VERSION}"));
    if have && terser {
        ok(&format!(
            "wasm-opt {BINARYEN_VERSION} and terser {TERSER_VERSION} (tools/)"
        ));
    } else {
        let npm = find("npm").ok_or(
            "npm is missing: it installs wasm-opt (binaryen). Install Node.js and npm \
             (Debian: apt-get install nodejs npm), then run cargo xtask setup again",
        )?;
        let tools_dir = root.join("tools");
        std::fs::create_dir_all(&tools_dir).map_err(|e| format!("create tools/: {e}"))?;
        run_cmd(
            Command::new(npm)
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&tools_dir)
                .arg(format!("binaryen@{BINARYEN_VERSION}"))
                .arg(format!("terser@{TERSER_VERSION}")),
        )?;
        did.push(format!(
            "installed wasm-opt {BINARYEN_VERSION} (npm binaryen) and terser {TERSER_VERSION} into tools/"
        ));
    }

    // 5. Debian packages: the browser and its driver.
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(program, _)| find(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        ok("chromium, chromedriver and mosquitto");
    } else {
        apt_install(&missing)?;
        did.push(format!("installed Debian packages {}", missing.join(" ")));
    }
    let chromedriver = find("chromedriver").ok_or("chromedriver is still missing after setup")?;
    let mosquitto = find("mosquitto").ok_or("mosquitto is still missing after setup")?;

    // 6. Python with the official Azure IoT SDKs, for devhub's interop tests.
    let python = python_env(&root, &find, &mut did)?;

    // 7. The official Azure IoT Node device SDK, for devhub's interop tests.
    node_env(&root, &find, &mut did)?;

    if did.is_empty() {
        println!("setup: everything was already installed");
    } else {
        for d in &did {
            println!("setup: {d}");
        }
    }
    Ok(Tools {
        path,
        python,
        chromedriver,
        mosquitto,
    })
}

fn ok(what: &str) {
    println!("  ok  {what}");
}

fn find_in(dirs: &[PathBuf], program: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(program)).find(|p| p.is_file())
}

/// The wasm-bindgen version that Cargo.lock pins.
fn wasm_bindgen_version(root: &Path) -> Result<String, String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("read Cargo.lock: {e} (run cargo generate-lockfile)"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

/// Installs Debian packages, or says exactly how when not root.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    let is_root = output(Command::new("id").arg("-u")).as_deref() == Some("0");
    let line = format!(
        "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
        packages.join(" ")
    );
    if !is_root {
        return Err(format!(
            "missing Debian packages {}; run as root:\n  sudo sh -c '{line}'",
            packages.join(" ")
        ));
    }
    run_cmd(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Creates `.venv` and installs `crates/devhub/tests/interop/requirements.txt` into it,
/// unless the installed requirements are already these.
fn python_env(
    root: &Path,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    did: &mut Vec<String>,
) -> Result<PathBuf, String> {
    let venv = root.join(".venv");
    let python = venv.join("bin/python");
    let req = root.join("crates/devhub/tests/interop/requirements.txt");
    let wanted =
        std::fs::read_to_string(&req).map_err(|e| format!("read {}: {e}", req.display()))?;
    let stamp = venv.join("twinscope-requirements.txt");
    if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        ok("Python SDKs (azure-iot-device, azure-iot-hub) in .venv");
        return Ok(python);
    }
    if !python.is_file() {
        let py = find("python3").ok_or(
            "python3 is missing: install Python 3 (Debian: apt-get install python3 python3-venv)",
        )?;
        run_cmd(Command::new(py).args(["-m", "venv"]).arg(&venv))?;
    }
    run_cmd(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&req),
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("write {}: {e}", stamp.display()))?;
    did.push("installed the Python SDKs for the interop tests into .venv".into());
    Ok(python)
}

/// The interop tests' Node packages, installed with `npm ci` from the committed lockfile
/// unless the installed ones already match it.
fn node_env(
    root: &Path,
    find: &dyn Fn(&str) -> Option<PathBuf>,
    did: &mut Vec<String>,
) -> Result<(), String> {
    let dir = root.join("crates/devhub/tests/interop/node");
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .map_err(|e| format!("read {}: {e}", dir.join("package-lock.json").display()))?;
    let stamp = dir.join("node_modules/.twinscope-lock");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        ok("Node SDKs (azure-iot-device, azure-iot-device-mqtt, azure-iothub) in crates/devhub/tests/interop/node");
        return Ok(());
    }
    let npm = find("npm")
        .ok_or("npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)")?;
    run_cmd(
        Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir),
    )?;
    std::fs::write(&stamp, lock).map_err(|e| format!("write {}: {e}", stamp.display()))?;
    did.push("installed the Node SDKs for the interop tests".into());
    Ok(())
}
