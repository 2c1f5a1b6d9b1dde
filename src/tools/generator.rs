//! The telemetry generator's plain parts: the telemetry form with template fields
//! ([`Plan`]), the run's schedule ([`Schedule`]), and what a run costs against IoT Hub's
//! daily message quotas ([`Billing`]).

use super::num::fixed;
use super::template::{Context, Template};
use crate::ui::model::TelemetryForm;
use twinscope_proto::text::Quoted;

/// The form's body and property values as templates.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    body: Template,
    props: Vec<Template>,
}

impl Plan {
    /// Parses the templates in `form` (the body, then each property value).
    pub fn parse(form: &TelemetryForm) -> Result<Plan, String> {
        let body = Template::parse(&form.body).map_err(|e| format!("body: {e}"))?;
        let props = form
            .props
            .iter()
            .map(|(k, v)| Template::parse(v).map_err(|e| format!("property {}: {e}", Quoted(k))))
            .collect::<Result<_, _>>()?;
        Ok(Plan { body, props })
    }

    /// Whether rendering changes anything.
    pub fn has_fields(&self) -> bool {
        !self.body.is_constant() || self.props.iter().any(|p| !p.is_constant())
    }

    /// `form` with its templates filled in.
    pub fn render(&self, form: &TelemetryForm, cx: &mut Context<'_>) -> TelemetryForm {
        let mut out = form.clone();
        out.body = self.body.render(cx);
        for ((_, v), t) in out.props.iter_mut().zip(&self.props) {
            *v = t.render(cx);
        }
        out
    }
}

/// When a run's messages are due: one every `interval_ms` from the start, `count` of them
/// (or until stopped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Milliseconds between messages.
    pub interval_ms: u64,
    /// How many, or `None` until stopped.
    pub count: Option<u64>,
    /// When the run started (ms).
    pub started_ms: u64,
    /// Messages produced so far.
    pub produced: u64,
}

/// The shortest interval the generator takes (browsers clamp timers below a few ms).
pub const MIN_INTERVAL_MS: u64 = 10;

impl Schedule {
    /// Reads the form's interval and count.
    pub fn parse(interval: &str, count: &str, now_ms: u64) -> Result<Schedule, String> {
        let interval_ms = interval
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|i| *i >= MIN_INTERVAL_MS)
            .ok_or_else(|| format!("the interval must be a whole number of milliseconds, at least {MIN_INTERVAL_MS}"))?;
        let count = match count.trim() {
            "" => None,
            c => Some(c.parse::<u64>().ok().filter(|c| *c > 0).ok_or(
                "the count must be a whole number above 0, or empty to run until stopped",
            )?),
        };
        Ok(Schedule {
            interval_ms,
            count,
            started_ms: now_ms,
            produced: 0,
        })
    }

    /// How many messages are due by `now` that have not been produced (bounded, so a tab
    /// that slept does not burst).
    pub fn due(&self, now_ms: u64) -> u64 {
        let by_time = now_ms.saturating_sub(self.started_ms) / self.interval_ms + 1;
        let target = self.count.map_or(by_time, |c| by_time.min(c));
        target.saturating_sub(self.produced).min(100)
    }

    /// Whether every message has been produced.
    pub fn finished(&self) -> bool {
        self.count.is_some_and(|c| self.produced >= c)
    }
}

/// One IoT Hub tier's daily message quota.
struct Tier {
    name: &'static str,
    /// Messages a day per unit.
    per_day: u64,
    /// Bytes a message counts as (larger ones count as several).
    chunk: usize,
}

/// Daily quotas per unit (Azure IoT Hub pricing; D-QUOTA: 4 KB chunks, 0.5 KB on Free).
const TIERS: [Tier; 4] = [
    Tier {
        name: "Free",
        per_day: 8_000,
        chunk: 512,
    },
    Tier {
        name: "S1/B1",
        per_day: 400_000,
        chunk: 4096,
    },
    Tier {
        name: "S2/B2",
        per_day: 6_000_000,
        chunk: 4096,
    },
    Tier {
        name: "S3/B3",
        per_day: 300_000_000,
        chunk: 4096,
    },
];

/// What messages of `size` bytes at one every `interval_ms` cost against the quotas.
#[derive(Clone, Debug, PartialEq)]
pub struct Billing {
    /// 4 KB units per message.
    pub units: u64,
    /// Units the whole run costs (when it has a count).
    pub run_units: Option<u64>,
    /// Messages a day at this rate.
    pub per_day: u64,
    /// (tier, share of one unit's daily quota used, in percent).
    pub tiers: Vec<(&'static str, f64)>,
}

impl Billing {
    /// The cost of `count` (or endless) messages of `size` bytes, one every `interval_ms`.
    pub fn of(size: usize, interval_ms: u64, count: Option<u64>) -> Billing {
        let units_in = |chunk: usize| size.div_ceil(chunk).max(1) as u64;
        let units = units_in(4096);
        let per_day = 86_400_000 / interval_ms.max(1);
        let tiers = TIERS
            .iter()
            .map(|t| {
                let used = per_day * units_in(t.chunk);
                (t.name, used as f64 * 100.0 / t.per_day as f64)
            })
            .collect();
        Billing {
            units,
            run_units: count.map(|c| c * units),
            per_day,
            tiers,
        }
    }

    /// In words, e.g. "1 × 4 KB unit a message; this run 100 units; 86,400 messages a day
    /// at this rate: Free 1080%, S1/B1 21.6%, ...".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} × 4 KB unit{} a message",
            self.units,
            if self.units == 1 { "" } else { "s" }
        );
        if let Some(r) = self.run_units {
            s.push_str(&format!("; this run {} units", group(r)));
        }
        s.push_str(&format!(
            "; {} messages a day at this rate, of one unit's daily quota: ",
            group(self.per_day)
        ));
        let parts: Vec<String> = self
            .tiers
            .iter()
            .map(|(name, pct)| format!("{name} {}", percent(*pct)))
            .collect();
        s.push_str(&parts.join(", "));
        s
    }
}

fn percent(p: f64) -> String {
    if p >= 100.0 {
        format!("{}% (over)", fixed(p, 0))
    } else if p >= 1.0 {
        format!("{}%", fixed(p, 1))
    } else {
        format!("{}%", fixed(p, 2))
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str, props: &[(&str, &str)]) -> TelemetryForm {
        TelemetryForm {
            body: body.into(),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: "application/json".into(),
            content_encoding: "utf-8".into(),
            qos: 1,
            ..TelemetryForm::default()
        }
    }

    #[test]
    fn the_plan_fills_body_and_property_values() {
        let f = form(
            r#"{"n": {{counter}}}"#,
            &[("seq", "{{counter}}"), ("site", "a")],
        );
        let plan = Plan::parse(&f).unwrap();
        assert!(plan.has_fields());
        let mut random = || 0.5;
        let mut cx = Context {
            counter: 42,
            now_ms: 0,
            start_ms: 0,
            device: "d",
            n: 1,
            request: None,
            random: &mut random,
        };
        let out = plan.render(&f, &mut cx);
        assert_eq!(out.body, r#"{"n": 42}"#);
        assert_eq!(
            out.props,
            vec![("seq".into(), "42".into()), ("site".into(), "a".into())]
        );
        assert_eq!(out.content_type, "application/json");
        assert!(!Plan::parse(&form("{}", &[])).unwrap().has_fields());
        let e = Plan::parse(&form("{}", &[("x", "{{nope}}")])).unwrap_err();
        assert!(e.starts_with("property \"x\""), "{e}");
    }

    #[test]
    fn the_schedule_spaces_messages_and_stops_at_the_count() {
        let mut s = Schedule::parse("1000", "3", 10_000).unwrap();
        assert_eq!(s.due(10_000), 1, "the first at once");
        s.produced = 1;
        assert_eq!(s.due(10_999), 0);
        assert_eq!(s.due(11_000), 1);
        assert_eq!(s.due(60_000), 2, "never past the count");
        s.produced = 3;
        assert!(s.finished());
        let endless = Schedule::parse("10", "", 0).unwrap();
        assert_eq!(endless.due(1_000_000), 100, "a sleeping tab does not burst");
        assert!(!endless.finished());
        assert!(Schedule::parse("5", "", 0).is_err());
        assert!(Schedule::parse("100", "0", 0).is_err());
        assert!(Schedule::parse("x", "", 0)
            .unwrap_err()
            .contains("milliseconds"));
    }

    #[test]
    fn billing_counts_units_and_quota_shares() {
        // 1 message a second, 100 bytes: 86,400 a day.
        let b = Billing::of(100, 1000, Some(100));
        assert_eq!((b.units, b.run_units, b.per_day), (1, Some(100), 86_400));
        assert_eq!(b.tiers[0].0, "Free");
        assert!((b.tiers[0].1 - 1080.0).abs() < 1e-9);
        assert!((b.tiers[1].1 - 21.6).abs() < 1e-9);
        // 5 KB: 2 units on paid tiers, 10 half-KB chunks on Free.
        let b = Billing::of(5000, 1000, None);
        assert_eq!(b.units, 2);
        assert!((b.tiers[0].1 - 10800.0).abs() < 1e-9);
        let d = Billing::of(100, 1000, Some(100)).describe();
        assert!(
            d.contains("this run 100 units") && d.contains("86,400 messages a day"),
            "{d}"
        );
        assert!(
            d.contains("Free 1080% (over)") && d.contains("S1/B1 21.6%"),
            "{d}"
        );
    }
}
