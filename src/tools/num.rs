//! Number text without the standard library's float formatting and parsing machinery
//! (`{:.1}` and `str::parse::<f64>` pull in about 25 KB of wasm: Grisu, Dragon4 and the
//! decimal-to-float tables). Fixed-point output is integer arithmetic; parsing goes through
//! serde_json's number parser, which the app ships anyway.

/// `x` rounded to `decimals` places (at most 6), half away from zero: `fixed(2.345, 1)` is
/// `"2.3"`, `fixed(99.95, 1)` is `"100.0"`. Not-a-number and infinities print as `"-"`.
pub fn fixed(x: f64, decimals: u32) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let decimals = decimals.min(6);
    let scale = 10u64.pow(decimals);
    let scaled = (x.abs() * scale as f64).round();
    if scaled >= u64::MAX as f64 {
        return "-".into();
    }
    let scaled = scaled as u64;
    let sign = if x < 0.0 && scaled != 0 { "-" } else { "" };
    let (whole, frac) = (scaled / scale, scaled % scale);
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac:0width$}", width = decimals as usize)
    }
}

/// A decimal number as JSON writes one (`18`, `-2.5`, `1e3`), surrounding spaces allowed.
pub fn parse_number(s: &str) -> Option<f64> {
    serde_json::from_slice::<serde_json::Number>(s.trim().as_bytes())
        .ok()?
        .as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rounds_half_away_from_zero_and_pads() {
        assert_eq!(fixed(2.345, 1), "2.3");
        assert_eq!(fixed(2.35, 1), "2.4");
        assert_eq!(fixed(99.95, 1), "100.0");
        assert_eq!(fixed(0.0, 2), "0.00");
        assert_eq!(fixed(0.05, 2), "0.05");
        assert_eq!(fixed(-1.25, 1), "-1.3");
        assert_eq!(fixed(-0.01, 1), "0.0");
        assert_eq!(fixed(1234.5, 0), "1235");
        assert_eq!(fixed(f64::NAN, 1), "-");
        assert_eq!(fixed(f64::INFINITY, 1), "-");
        // The same text as the standard library where it does not round at a tie.
        for x in [0.0, 0.123, 7.0, 41.999, 12345.678, 1e-3] {
            assert_eq!(fixed(x, 2), format!("{x:.2}"));
        }
    }

    #[test]
    fn parse_number_takes_json_numbers_only() {
        assert_eq!(parse_number("18"), Some(18.0));
        assert_eq!(parse_number(" -2.5 "), Some(-2.5));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("0.25"), Some(0.25));
        for bad in ["", "abc", "1,5", "NaN", "inf", "--1", "1 2", "0x10"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }
}
