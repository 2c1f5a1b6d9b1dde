//! The shipped app is built with `-Zfmt-debug=none` (see `cargo xtask build` and
//! docs/benchmarks.md): `{:?}` writes nothing there. So the code it is built from (the app
//! and twinscope-proto, tests aside) must never format with Debug; it quotes names and
//! values with `twinscope_proto::text::Quoted` instead, which writes the same on any build.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `file:line: text` for each Debug format in the code before the file's tests.
fn debug_formats(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains(":?}") || code.contains(":#?}")
        })
        .map(|(i, l)| format!("{}:{}: {}", file.display(), i + 1, l.trim()))
        .collect()
}

#[test]
fn the_shipped_code_never_formats_with_debug() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("crates/proto/src"), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let found: Vec<String> = files.iter().flat_map(|f| debug_formats(f)).collect();
    assert!(
        found.is_empty(),
        "Debug formatting prints nothing in the shipped app; quote with \
         twinscope_proto::text::Quoted instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_a_debug_format() {
    let dir = std::env::temp_dir().join(format!("twinscope-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x.rs");
    std::fs::write(
        &f,
        "fn a(n: &str) -> String {\n    format!(\"name {n:?}\") // {:?} in a comment is fine\n}\n\
         #[cfg(test)]\nmod tests { fn b() { format!(\"{:?}\", 1); } }\n",
    )
    .unwrap();
    let found = debug_formats(&f);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with(":2: format!(\"name {n:?}\") // {:?} in a comment is fine"));
}
