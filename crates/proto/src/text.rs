//! Names and values quoted in messages people read, and text read out of JSON.
//!
//! The shipped app is built with `-Zfmt-debug=none` (Debug formatting compiled out, for
//! size: see docs/benchmarks.md), so text a person reads never uses `{:?}`: it quotes with
//! [`Quoted`] and [`QuotedChar`], which write what `{:?}` writes on a stable build.

use std::fmt::{self, Display, Write};

/// A string member of a JSON object, if it is there and a string. The app reads JSON by
/// hand rather than with derived readers (they cost it several KB of wasm each).
pub fn json_text(v: &serde_json::Value, name: &str) -> Option<String> {
    v.get(name)?.as_str().map(str::to_string)
}

/// A string in double quotes, its quotes, backslashes and control characters escaped.
pub struct Quoted<'a>(pub &'a str);

/// A character in single quotes, escaped as in [`Quoted`].
pub struct QuotedChar(pub char);

fn escaped(f: &mut fmt::Formatter<'_>, c: char, quote: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        c if c == quote => {
            f.write_char('\\')?;
            f.write_char(c)
        }
        // `\n`, `\t`, `\r`, `\0`, else `\u{..}`, as `{:?}` writes them.
        '\0' => f.write_str("\\0"),
        c if c.is_control() => write!(f, "{}", c.escape_default()),
        c => f.write_char(c),
    }
}

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            escaped(f, c, '"')?;
        }
        f.write_char('"')
    }
}

impl Display for QuotedChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('\'')?;
        escaped(f, self.0, '\'')?;
        f.write_char('\'')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_writes_what_debug_writes() {
        for s in [
            "",
            "plain",
            "say \"hi\"",
            "it's",
            "back\\slash",
            "line\nbreak\ttab\rreturn",
            "nul\0and\u{1}bell\u{7}del\u{7f}",
            "température 温度 🌡",
        ] {
            assert_eq!(Quoted(s).to_string(), format!("{s:?}"), "{s}");
        }
        for c in ['a', '\'', '"', '\\', '\n', '\0', '\u{1b}', 'é', '#'] {
            assert_eq!(QuotedChar(c).to_string(), format!("{c:?}"), "{c}");
        }
    }

    #[test]
    fn json_text_reads_only_string_members() {
        let v = serde_json::json!({"a": "x", "n": 1, "z": null});
        assert_eq!(json_text(&v, "a").as_deref(), Some("x"));
        assert_eq!(json_text(&v, "n"), None);
        assert_eq!(json_text(&v, "z"), None);
        assert_eq!(json_text(&v, "missing"), None);
        assert_eq!(json_text(&serde_json::json!([1]), "a"), None);
    }
}
