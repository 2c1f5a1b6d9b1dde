//! Method rules: answer direct-method calls by rule, per method name or for any method,
//! with a status, a payload template (which may use the call's payload as `request.*`)
//! and a delay. The first rule for the exact name wins; else the first rule for any.

use serde_json::Value;
use twinscope_proto::text::Quoted;

use super::template::{Context, Template};

/// One rule as the user typed it, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Stable id in the list.
    pub id: u64,
    /// The method name, or `None` for any method.
    pub method: Option<String>,
    /// The status to answer with.
    pub status: i32,
    /// The answer's payload (JSON after rendering).
    pub payload: Template,
    /// The payload as typed.
    pub payload_text: String,
    /// How long to wait before answering (ms).
    pub delay_ms: u64,
}

/// The longest delay a rule may have: past it, the caller's 300 s maximum is over.
pub const MAX_DELAY_MS: u64 = 300_000;

impl Rule {
    /// Checks a rule as typed: method (`*` or empty for any), status, payload, delay.
    pub fn parse(
        id: u64,
        method: &str,
        status: &str,
        payload: &str,
        delay: &str,
    ) -> Result<Rule, String> {
        let method = match method.trim() {
            "" | "*" => None,
            m if m.contains(['/', '?', '#', '+']) => {
                return Err(format!("method name {} may not contain / ? # +", Quoted(m)))
            }
            m => Some(m.to_string()),
        };
        let status = status
            .trim()
            .parse::<i32>()
            .map_err(|_| "the status must be a whole number, e.g. 200".to_string())?;
        let payload_t = Template::parse(payload).map_err(|e| format!("payload: {e}"))?;
        // The answer must be JSON whatever the call carries: try it with an empty request.
        let sample = {
            let mut random = || 0.5;
            let req = Value::Object(Default::default());
            payload_t.render(&mut Context {
                counter: 1,
                now_ms: 0,
                start_ms: 0,
                device: "device",
                n: 1,
                request: Some(&req),
                random: &mut random,
            })
        };
        if !sample.trim().is_empty() {
            serde_json::from_slice::<Value>(sample.as_bytes()).map_err(|e| {
                format!("the payload is not JSON once filled in ({e}); put text fields in quotes, e.g. \"{{{{request.name}}}}\"")
            })?;
        }
        let delay_ms = match delay.trim() {
            "" => 0,
            d => d
                .parse::<u64>()
                .ok()
                .filter(|d| *d <= MAX_DELAY_MS)
                .ok_or("the delay must be a number of milliseconds up to 300000")?,
        };
        Ok(Rule {
            id,
            method,
            status,
            payload: payload_t,
            payload_text: payload.to_string(),
            delay_ms,
        })
    }

    /// How the list names it, e.g. `rule 2 (reboot → 200)`.
    pub fn label(&self, index: usize) -> String {
        format!(
            "rule {} ({} → {})",
            index + 1,
            self.method.as_deref().unwrap_or("any method"),
            self.status
        )
    }

    /// The answer to a call with `request` as its payload: (status, payload bytes).
    pub fn answer(
        &self,
        request: &[u8],
        cx_counter: u64,
        now_ms: u64,
        device: &str,
    ) -> (i32, Vec<u8>) {
        let req: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
        let mut random = || js_free_random(now_ms, cx_counter);
        let text = self.payload.render(&mut Context {
            counter: cx_counter,
            now_ms,
            start_ms: now_ms,
            device,
            n: 1,
            request: Some(&req),
            random: &mut random,
        });
        (self.status, text.into_bytes())
    }
}

/// A cheap pseudo-random number from the clock and a counter (rules need no strong
/// randomness; `uuid` in an answer only needs to differ between calls).
fn js_free_random(now_ms: u64, counter: u64) -> f64 {
    let mut x = now_ms ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The rule that answers a call to `method`: the first for that exact name, else the
/// first for any method. Returns its index too (for its label).
pub fn find<'a>(rules: &'a [Rule], method: &str) -> Option<(usize, &'a Rule)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.method.as_deref() == Some(method))
        .or_else(|| rules.iter().enumerate().find(|(_, r)| r.method.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u64, method: &str, status: &str, payload: &str) -> Rule {
        Rule::parse(id, method, status, payload, "").unwrap()
    }

    #[test]
    fn exact_names_win_over_any_and_order_breaks_ties() {
        let rules = vec![
            rule(1, "*", "500", "{}"),
            rule(2, "reboot", "200", "{}"),
            rule(3, "reboot", "201", "{}"),
        ];
        assert_eq!(find(&rules, "reboot").map(|(i, r)| (i, r.id)), Some((1, 2)));
        assert_eq!(find(&rules, "other").map(|(_, r)| r.id), Some(1));
        assert_eq!(find(&rules[1..], "other"), None);
        assert_eq!(rules[1].label(1), "rule 2 (reboot → 200)");
        assert_eq!(rules[0].label(0), "rule 1 (any method → 500)");
    }

    #[test]
    fn answers_use_the_request_payload() {
        let r = rule(
            1,
            "echo",
            "200",
            r#"{"got": {{request.delay}}, "by": "{{request.who}}", "n": {{counter}}}"#,
        );
        let (status, body) = r.answer(br#"{"delay": 5, "who": "ops"}"#, 3, 0, "d");
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"got": 5, "by": "ops", "n": 3}));
        // A call without a JSON payload: request fields are null.
        let (_, body) = r.answer(b"", 1, 0, "d");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["got"],
            Value::Null
        );
    }

    #[test]
    fn bad_rules_are_refused_in_words() {
        assert!(Rule::parse(1, "a/b", "200", "{}", "")
            .unwrap_err()
            .contains("may not contain"));
        assert!(Rule::parse(1, "m", "ok", "{}", "")
            .unwrap_err()
            .contains("status"));
        assert!(Rule::parse(1, "m", "200", "{nope", "")
            .unwrap_err()
            .contains("not JSON"));
        assert!(Rule::parse(1, "m", "200", "{\"a\": {{request.x}}}", "").is_ok());
        assert!(Rule::parse(1, "m", "200", "{\"a\": {{request.x}}", "").is_err());
        assert!(Rule::parse(1, "m", "200", "{}", "400000")
            .unwrap_err()
            .contains("delay"));
        assert_eq!(Rule::parse(1, "m", "200", "", "250").unwrap().delay_ms, 250);
        assert_eq!(Rule::parse(1, "", "200", "{}", "").unwrap().method, None);
    }
}
