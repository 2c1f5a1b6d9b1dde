//! Template fields for generated telemetry and scripted method answers:
//! `{{counter}}`, `{{now}}`, `{{uuid}}`, `{{random(min,max)}}`, `{{sine(period,amplitude)}}`,
//! `{{choice(a,b,c)}}`, `{{device}}`, `{{n}}`, and `{{request.path}}` (a field of a method
//! call's payload). A template is parsed once (errors say where and what is known) and
//! rendered many times with a [`Context`]; randomness comes from the caller, so tests are
//! deterministic.

use serde_json::Value;

/// Why a template cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` with no `}}` after it.
    #[error("a field opened at character {0} is not closed with }}}}")]
    Unclosed(usize),
    /// A name that is not a field.
    #[error("unknown field {{{{{name}}}}} at character {at}; the fields are counter, now, uuid, random(min,max), sine(period,amplitude), choice(a,b,...), device, n and request.<field>")]
    Unknown {
        /// The name as written.
        name: String,
        /// 1-based character position of its `{{`.
        at: usize,
    },
    /// A field with the wrong arguments.
    #[error("{{{{{field}}}}} at character {at}: {why}")]
    BadArgs {
        /// The field.
        field: String,
        /// 1-based character position.
        at: usize,
        /// What is wrong.
        why: &'static str,
    },
}

#[derive(Clone, Debug, PartialEq)]
enum Field {
    Counter,
    Now,
    Uuid,
    RandomInt(i64, i64),
    RandomFloat(f64, f64),
    Sine { period_s: f64, amplitude: f64 },
    Choice(Vec<String>),
    Device,
    N,
    Request(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a rendering knows.
pub struct Context<'a> {
    /// The message number in the run, from 1.
    pub counter: u64,
    /// Now (ms since 1970).
    pub now_ms: u64,
    /// When the run started (ms), for `sine`.
    pub start_ms: u64,
    /// The device id.
    pub device: &'a str,
    /// The device's number in a fleet (1 for a single device).
    pub n: u64,
    /// A method call's payload, for `request.*`.
    pub request: Option<&'a Value>,
    /// Uniform random numbers in `[0, 1)`.
    pub random: &'a mut dyn FnMut() -> f64,
}

fn args_of(inner: &str) -> Option<(&str, Vec<String>)> {
    let open = inner.find('(')?;
    let name = inner[..open].trim();
    let rest = inner[open + 1..].trim_end();
    let body = rest.strip_suffix(')')?;
    let args = body
        .split(',')
        .map(|a| {
            let a = a.trim();
            a.strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| a.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(a)
                .to_string()
        })
        .collect();
    Some((name, args))
}

fn field(inner: &str, at: usize) -> Result<Field, TemplateError> {
    let inner = inner.trim();
    let bad = |why| TemplateError::BadArgs {
        field: inner.to_string(),
        at,
        why,
    };
    match inner {
        "counter" => return Ok(Field::Counter),
        "now" => return Ok(Field::Now),
        "uuid" => return Ok(Field::Uuid),
        "device" => return Ok(Field::Device),
        "n" => return Ok(Field::N),
        "request" => return Ok(Field::Request(Vec::new())),
        _ => {}
    }
    if let Some(path) = inner.strip_prefix("request.") {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(bad("write request.name or request.outer.inner"));
        }
        return Ok(Field::Request(parts));
    }
    let Some((name, args)) = args_of(inner) else {
        return Err(TemplateError::Unknown {
            name: inner.to_string(),
            at,
        });
    };
    let nums = |args: &[String]| -> Option<Vec<f64>> {
        args.iter().map(|a| super::num::parse_number(a)).collect()
    };
    match name {
        "random" => {
            if args.len() != 2 {
                return Err(bad("random takes two numbers: random(min,max)"));
            }
            if let (Ok(a), Ok(b)) = (args[0].parse::<i64>(), args[1].parse::<i64>()) {
                return if a <= b {
                    Ok(Field::RandomInt(a, b))
                } else {
                    Err(bad("min must not be above max"))
                };
            }
            match nums(&args).as_deref() {
                Some([a, b]) if a <= b => Ok(Field::RandomFloat(*a, *b)),
                Some(_) => Err(bad("min must not be above max")),
                None => Err(bad("random takes two numbers: random(min,max)")),
            }
        }
        "sine" => match nums(&args).as_deref() {
            Some([p, a]) if *p > 0.0 => Ok(Field::Sine {
                period_s: *p,
                amplitude: *a,
            }),
            Some([_, _]) => Err(bad("the period (seconds) must be above 0")),
            _ => Err(bad(
                "sine takes a period in seconds and an amplitude: sine(60,10)",
            )),
        },
        "choice" => {
            if args.iter().all(String::is_empty) {
                return Err(bad("choice needs at least one value: choice(a,b,c)"));
            }
            Ok(Field::Choice(args))
        }
        _ => Err(TemplateError::Unknown {
            name: inner.to_string(),
            at,
        }),
    }
}

impl Template {
    /// Parses `s`. Text outside `{{ }}` is kept as is.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let at = s[..offset + open].chars().count() + 1;
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed(at))?;
            parts.push(Part::Field(field(&after[..close], at)?));
            let used = open + 2 + close + 2;
            offset += used;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Whether the template has no fields (renders the same every time).
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text with every field filled in.
    pub fn render(&self, cx: &mut Context<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&render_field(f, cx)),
            }
        }
        out
    }
}

fn render_field(f: &Field, cx: &mut Context<'_>) -> String {
    match f {
        Field::Counter => cx.counter.to_string(),
        Field::Now => iso8601(cx.now_ms),
        Field::Uuid => uuid(cx.random),
        Field::RandomInt(a, b) => {
            let span = (b - a) as f64 + 1.0;
            let v = a + ((cx.random)() * span).floor() as i64;
            v.min(*b).to_string()
        }
        Field::RandomFloat(a, b) => number(a + (cx.random)() * (b - a)),
        Field::Sine {
            period_s,
            amplitude,
        } => {
            let t = cx.now_ms.saturating_sub(cx.start_ms) as f64 / 1000.0;
            number(amplitude * (std::f64::consts::TAU * t / period_s).sin())
        }
        Field::Choice(options) => {
            let i = ((cx.random)() * options.len() as f64) as usize;
            options[i.min(options.len() - 1)].clone()
        }
        Field::Device => cx.device.to_string(),
        Field::N => cx.n.to_string(),
        Field::Request(path) => {
            let mut v = cx.request;
            for p in path {
                v = v.and_then(|v| v.get(p.as_str()));
            }
            match v {
                None => "null".into(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }
        }
    }
}

/// A number with at most 3 decimals, as JSON writes it (`2.5`, `-1`, `0.333`).
fn number(x: f64) -> String {
    let r = (x * 1000.0).round() / 1000.0;
    let r = if r == 0.0 { 0.0 } else { r };
    serde_json::Number::from_f64(r).map_or_else(|| "0".into(), |n| n.to_string())
}

/// A random (version 4) UUID.
fn uuid(random: &mut dyn FnMut() -> f64) -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = (random() * 256.0) as u8;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for ms since 1970 (UTC).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(
        t: &str,
        counter: u64,
        now_ms: u64,
        rolls: &[f64],
        request: Option<&Value>,
    ) -> String {
        let mut i = 0;
        let mut random = || {
            let r = rolls[i % rolls.len()];
            i += 1;
            r
        };
        let mut cx = Context {
            counter,
            now_ms,
            start_ms: 0,
            device: "sensor-7",
            n: 7,
            request,
            random: &mut random,
        };
        Template::parse(t).unwrap().render(&mut cx)
    }

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(render("{\"a\": 1}", 1, 0, &[0.5], None), "{\"a\": 1}");
        assert!(Template::parse("x").unwrap().is_constant());
        assert!(!Template::parse("{{n}}").unwrap().is_constant());
    }

    #[test]
    fn fields_fill_in() {
        let t = r#"{"n": {{counter}}, "at": "{{now}}", "dev": "{{device}}/{{ n }}"}"#;
        assert_eq!(
            render(t, 3, 1_764_460_800_123, &[0.0], None),
            r#"{"n": 3, "at": "2025-11-30T00:00:00.123Z", "dev": "sensor-7/7"}"#
        );
    }

    #[test]
    fn random_respects_its_bounds_and_kind() {
        assert_eq!(render("{{random(1,6)}}", 1, 0, &[0.0], None), "1");
        assert_eq!(render("{{random(1,6)}}", 1, 0, &[0.9999], None), "6");
        assert_eq!(render("{{random(20.0,30.0)}}", 1, 0, &[0.25], None), "22.5");
        assert_eq!(render("{{random(-5, -5)}}", 1, 0, &[0.7], None), "-5");
    }

    #[test]
    fn sine_follows_time_since_the_start() {
        // A quarter period in: the peak.
        assert_eq!(render("{{sine(60,10)}}", 1, 15_000, &[0.0], None), "10.0");
        assert_eq!(render("{{sine(60,10)}}", 1, 0, &[0.0], None), "0.0");
        assert_eq!(render("{{sine(60,10)}}", 1, 45_000, &[0.0], None), "-10.0");
    }

    #[test]
    fn choice_and_uuid_use_the_random_source() {
        assert_eq!(
            render("{{choice(red, 'green', \"blue\")}}", 1, 0, &[0.5], None),
            "green"
        );
        assert_eq!(
            render("{{choice(red,green,blue)}}", 1, 0, &[0.99], None),
            "blue"
        );
        let u = render("{{uuid}}", 1, 0, &[0.1, 0.9, 0.5], None);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "variant: {u}");
        assert_ne!(u, render("{{uuid}}", 1, 0, &[0.2, 0.3], None));
    }

    #[test]
    fn request_fields_come_from_the_call_payload() {
        let req = json!({"delay": 5, "who": "ops", "nested": {"x": [1, 2]}});
        let t = r#"{"echo": {{request.delay}}, "by": "{{request.who}}", "x": {{request.nested.x}}, "none": {{request.missing}}}"#;
        assert_eq!(
            render(t, 1, 0, &[0.0], Some(&req)),
            r#"{"echo": 5, "by": "ops", "x": [1,2], "none": null}"#
        );
        assert_eq!(
            render("{{request}}", 1, 0, &[0.0], Some(&req)),
            req.to_string()
        );
    }

    #[test]
    fn mistakes_say_where_and_what() {
        assert_eq!(
            Template::parse("ab{{count"),
            Err(TemplateError::Unclosed(3))
        );
        let e = Template::parse("x {{temp}}").unwrap_err();
        assert_eq!(
            e,
            TemplateError::Unknown {
                name: "temp".into(),
                at: 3
            }
        );
        assert!(e.to_string().contains("{{temp}}"), "{e}");
        assert!(Template::parse("{{random(5,1)}}")
            .unwrap_err()
            .to_string()
            .contains("min"));
        assert!(Template::parse("{{random(a,b)}}").is_err());
        assert!(Template::parse("{{sine(0,1)}}").is_err());
        assert!(Template::parse("{{choice()}}").is_err());
        assert!(Template::parse("{{request.}}").is_err());
    }

    #[test]
    fn iso_dates_are_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }
}
