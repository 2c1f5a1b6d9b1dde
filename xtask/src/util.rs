//! Small helpers: the workspace root, running commands, printing steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Prints a step header so that long logs are easy to follow.
pub fn step(what: &str) {
    println!("\n==> {what}");
}

/// Runs a command with inherited output; an error names the command and its status.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", describe(cmd)))
    }
}

/// Runs a command and returns its trimmed stdout when it succeeds, `None` otherwise
/// (including when the program does not exist).
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `program arg arg ...`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A scratch directory (`target/tmp/xtask-NAME`) that every child of this run uses as
/// `TMPDIR`, emptied after each step and removed at the end.
///
/// Without it each test binary's headless Chromium leaves a ~120 MB profile
/// (`org.chromium.Chromium.scoped_dir.*`) in /tmp when its chromedriver is stopped, about
/// 4 GB per `cargo xtask test`, and a machine that runs the suite often fills its disk.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Result<Scratch, String> {
        let dir = root().join("target/tmp").join(format!("xtask-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        // Set before any thread or child starts: every child inherits it.
        std::env::set_var("TMPDIR", &dir);
        Ok(Scratch(dir))
    }

    /// Removes what the finished steps left behind; call only when no child is running
    /// that may still use it.
    pub fn sweep(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The whole app's budget, gzipped (wasm + JS + CSS): `cargo xtask test` fails past it.
pub const BUNDLE_BUDGET: u64 = 300 * 1024;

/// A file's size, raw and compressed by `gzip -9`.
pub fn gzip_size(path: &Path) -> Result<(u64, u64), String> {
    let raw = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    Ok((raw, out.stdout.len() as u64))
}

/// The built app in dist/: (kind, raw bytes, gzipped bytes) for its wasm, JS and CSS.
pub fn dist_sizes() -> Result<Vec<(&'static str, u64, u64)>, String> {
    let dist = root().join("dist");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dist).map_err(|e| format!("{}: {e}", dist.display()))? {
        let p = entry.map_err(|e| e.to_string())?.path();
        let kind = match p.extension().and_then(|e| e.to_str()) {
            Some("wasm") => "wasm",
            Some("js") => "js",
            Some("css") => "css",
            _ => continue,
        };
        let (raw, z) = gzip_size(&p)?;
        files.push((kind, raw, z));
    }
    files.sort();
    Ok(files)
}
