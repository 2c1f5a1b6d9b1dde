//! A fleet's plain parts: device names from a pattern (`sensor-{n}`), checked as DPS
//! registration ids.

use twinscope_proto::provisioning::check_registration_id;
use twinscope_proto::text::Quoted;

/// The most devices one tab runs as a fleet.
pub const MAX_FLEET: u64 = 100;

/// `(n, name)` for devices `1..=count`, named by `pattern` with `{n}` replaced.
pub fn names(pattern: &str, count: &str) -> Result<Vec<(u64, String)>, String> {
    let pattern = pattern.trim();
    if !pattern.contains("{n}") {
        return Err("the name pattern must contain {n}, e.g. sensor-{n}".into());
    }
    let count = count
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|c| (1..=MAX_FLEET).contains(c))
        .ok_or_else(|| format!("the number of devices must be 1 to {MAX_FLEET}"))?;
    (1..=count)
        .map(|n| {
            let name = pattern.replace("{n}", &n.to_string());
            check_registration_id(&name).map_err(|e| format!("{}: {e}", Quoted(&name)))?;
            Ok((n, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        assert_eq!(
            names("sensor-{n}", "3").unwrap(),
            vec![
                (1, "sensor-1".into()),
                (2, "sensor-2".into()),
                (3, "sensor-3".into())
            ]
        );
        assert!(names("sensor", "3").unwrap_err().contains("{n}"));
        assert!(names("sensor-{n}", "0").is_err());
        assert!(names("sensor-{n}", "101").is_err());
        assert!(names("Sensor {n}", "1").unwrap_err().contains("lowercase"));
    }
}
