//! Percent-encoding as the IoT Hub SDKs do it.
//!
//! Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - _ . ~` is encoded,
//! with upper-case hex (`%2F`), and a space is `%20`, never `+`. This matches Node's
//! strict `encodeURIComponent` (SAS vector V5 encodes `(`, `'` and `)`) and Python's
//! `urllib.parse.quote(safe="")`, so tokens and topics are byte-for-byte the SDKs'.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters that are encoded: all but the unreserved set.
pub const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes `s`.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

/// Percent-encodes `s` onto the end of `out` (no allocation of its own).
pub fn encode_into(out: &mut String, s: &str) {
    out.extend(utf8_percent_encode(s, ENCODE_SET));
}

/// Percent-decodes `s`; `None` if the result is not UTF-8. `+` stays `+` (it is not a
/// space in IoT Hub's property bags). Malformed escapes such as `%zz` are kept literally,
/// as browsers and the hub's HTTP stack do.
pub fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_sdks() {
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
        assert_eq!(encode("encode('Me')"), "encode%28%27Me%27%29");
        assert_eq!(encode("application/json"), "application%2Fjson");
        assert_eq!(encode("$.mid"), "%24.mid");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("+#&="), "%2B%23%26%3D");
    }

    #[test]
    fn decodes_and_keeps_plus() {
        assert_eq!(decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(decode("%2f").as_deref(), Some("/"));
        assert_eq!(decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(decode("%ff"), None);
    }
}
