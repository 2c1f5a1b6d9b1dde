//! Device twins (D-TWIN): documents, JSON merge-patch, validation, and the error body.
//!
//! A section (desired or reported) holds properties plus `$version` (bumped on every
//! change) and `$metadata` (per node `$lastUpdated`, and `$lastUpdatedVersion` for
//! desired). The device sees `{"desired": {..., "$version": n}, "reported": {..., "$version": m}}`.
//!
//! Limits checked by [`validate_patch`] and [`TwinSection::apply_patch`]:
//! keys are non-empty, at most 1 KB, without control characters, `.`, `$` or space;
//! objects nest at most 10 levels below the root; integers lie in
//! [-4503599627370496, 4503599627370495]; strings are at most 4 KB; a section is at most
//! 32 KB counted as the service does (key lengths, string lengths without control
//! characters, 8 bytes per number, 4 per boolean).

use serde::Serialize;
use serde_json::{Map, Value};

/// Maximum size of the desired or reported section.
pub const MAX_SECTION_BYTES: usize = 32 * 1024;
/// Maximum size of the tags, counted as [`section_size`] counts.
pub const MAX_TAGS_BYTES: usize = 8 * 1024;
/// Maximum nesting of objects below the root.
pub const MAX_DEPTH: usize = 10;
/// Maximum key length in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Maximum string value length in bytes.
pub const MAX_STRING_BYTES: usize = 4 * 1024;
/// Smallest integer a twin can hold.
pub const MIN_INT: i64 = -4_503_599_627_370_496;
/// Largest integer a twin can hold.
pub const MAX_INT: i64 = 4_503_599_627_370_495;

/// Why a patch or document is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// A patch that is not a JSON object.
    #[error("a twin patch must be a JSON object, like {{\"temperature\": 21}}")]
    NotAnObject,
    /// A key breaks the key rules.
    #[error("key {} at {path}: {why}", crate::text::Quoted(.key))]
    BadKey {
        /// The key (shortened if long).
        key: String,
        /// Where, as a JSON path.
        path: String,
        /// Which rule.
        why: &'static str,
    },
    /// Objects nested too deep.
    #[error("{path} is nested {depth} levels deep; twins allow {max}", max = MAX_DEPTH)]
    TooDeep {
        /// Where.
        path: String,
        /// How deep.
        depth: usize,
    },
    /// An integer out of the twin range.
    #[error(
        "{path}: integer {value} is outside the twin range -4503599627370496..4503599627370495"
    )]
    IntegerOutOfRange {
        /// Where.
        path: String,
        /// The number as written.
        value: String,
    },
    /// A string longer than 4 KB.
    #[error("{path}: string of {len} bytes is longer than 4 KB")]
    StringTooLong {
        /// Where.
        path: String,
        /// Its length.
        len: usize,
    },
    /// The section would exceed 32 KB.
    #[error("{section} properties would be {size} bytes; twins allow 32 KB ({max})", max = MAX_SECTION_BYTES)]
    TooLarge {
        /// "desired", "reported" or "tags".
        section: &'static str,
        /// The computed size.
        size: usize,
    },
    /// A document without the expected shape.
    #[error("twin document is missing {0}")]
    Shape(&'static str),
}

/// Checks a patch for the key, depth, integer and string rules. `null` values are allowed
/// (they delete).
pub fn validate_patch(patch: &Value) -> Result<(), TwinError> {
    let obj = patch.as_object().ok_or(TwinError::NotAnObject)?;
    validate_object(obj, "$", 0)
}

fn validate_object(obj: &Map<String, Value>, path: &str, depth: usize) -> Result<(), TwinError> {
    if depth > MAX_DEPTH {
        return Err(TwinError::TooDeep {
            path: path.to_string(),
            depth,
        });
    }
    for (k, v) in obj {
        let bad = |why| TwinError::BadKey {
            key: k.chars().take(64).collect(),
            path: path.to_string(),
            why,
        };
        if k.is_empty() {
            return Err(bad("keys cannot be empty"));
        }
        if k.len() > MAX_KEY_BYTES {
            return Err(bad("keys are at most 1 KB"));
        }
        if k.chars().any(char::is_control) {
            return Err(bad("keys cannot contain control characters"));
        }
        if k.contains(['.', '$', ' ']) {
            return Err(bad("keys cannot contain '.', '$' or space"));
        }
        validate_value(v, &format!("{path}.{k}"), depth)?;
    }
    Ok(())
}

fn validate_value(v: &Value, path: &str, depth: usize) -> Result<(), TwinError> {
    match v {
        Value::Object(o) => validate_object(o, path, depth + 1),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| validate_value(x, &format!("{path}[{i}]"), depth)),
        Value::Number(n) => {
            let in_range = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => (MIN_INT..=MAX_INT).contains(&i),
                (None, Some(_)) => false,
                (None, None) => true, // a float
            };
            if in_range {
                Ok(())
            } else {
                Err(TwinError::IntegerOutOfRange {
                    path: path.to_string(),
                    value: n.to_string(),
                })
            }
        }
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(TwinError::StringTooLong {
            path: path.to_string(),
            len: s.len(),
        }),
        _ => Ok(()),
    }
}

/// The size of properties as the service counts it, skipping `$version` and `$metadata`.
pub fn section_size(obj: &Map<String, Value>) -> usize {
    obj.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| k.chars().count() + value_size(v))
        .sum()
}

/// The documented rule (strings by characters, numbers 8, booleans 4) says nothing of
/// `null` or empty containers; counting them as nothing would let a section of
/// `[null, null, ...]` or `{"a": {}, ...}` grow without bound, so `null` counts 4 (its
/// text) and an empty array or object 2 (its brackets).
fn value_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s.chars().filter(|c| !c.is_control()).count(),
        Value::Array(a) if a.is_empty() => 2,
        Value::Array(a) => a.iter().map(value_size).sum(),
        Value::Object(o) if o.is_empty() => 2,
        Value::Object(o) => section_size(o),
    }
}

/// RFC 7386 JSON merge-patch as twins use it: objects merge, `null` deletes, anything
/// else (arrays included) replaces.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.shift_remove(k);
            }
            Value::Object(p) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

/// One section of a twin, as the hub keeps it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TwinSection {
    /// The properties, without `$version` and `$metadata`.
    pub properties: Map<String, Value>,
    /// The version, bumped on every change.
    pub version: u64,
    /// `$metadata`: `$lastUpdated` (and for desired `$lastUpdatedVersion`) per node.
    pub metadata: Map<String, Value>,
}

impl TwinSection {
    /// A new section at version 1 (as the hub creates them), stamped `now`.
    pub fn new(now: &str) -> TwinSection {
        let mut metadata = Map::new();
        metadata.insert("$lastUpdated".into(), Value::String(now.to_string()));
        TwinSection {
            properties: Map::new(),
            version: 1,
            metadata,
        }
    }

    /// Validates and applies a patch: merges, bumps the version, and stamps metadata for
    /// every node the patch touches with `now` (ISO-8601) and, when `track_version`
    /// (desired), the new version. Nothing changes on error.
    pub fn apply_patch(
        &mut self,
        patch: &Value,
        now: &str,
        section: &'static str,
        track_version: bool,
    ) -> Result<u64, TwinError> {
        validate_patch(patch)?;
        let patch = patch.as_object().ok_or(TwinError::NotAnObject)?;
        let mut next = self.properties.clone();
        merge_patch(&mut next, patch);
        let size = section_size(&next);
        if size > MAX_SECTION_BYTES {
            return Err(TwinError::TooLarge { section, size });
        }
        self.properties = next;
        self.version += 1;
        let stamp = Stamp {
            now,
            version: track_version.then_some(self.version),
        };
        stamp.node(&mut self.metadata);
        stamp.patch(&mut self.metadata, patch);
        Ok(self.version)
    }

    /// Replaces all properties (the service's PUT on desired), as one new version.
    pub fn replace(
        &mut self,
        props: &Value,
        now: &str,
        section: &'static str,
        track_version: bool,
    ) -> Result<u64, TwinError> {
        validate_patch(props)?;
        let obj = props.as_object().ok_or(TwinError::NotAnObject)?;
        let size = section_size(obj);
        if size > MAX_SECTION_BYTES {
            return Err(TwinError::TooLarge { section, size });
        }
        // Null members of a replacement mean "absent".
        let mut clean = Map::new();
        merge_patch(&mut clean, obj);
        self.properties = clean;
        self.version += 1;
        let stamp = Stamp {
            now,
            version: track_version.then_some(self.version),
        };
        self.metadata = Map::new();
        stamp.node(&mut self.metadata);
        let props = self.properties.clone();
        stamp.patch(&mut self.metadata, &props);
        Ok(self.version)
    }

    /// The section as JSON: properties, `$version`, and `$metadata` if asked.
    pub fn to_json(&self, with_metadata: bool) -> Value {
        let mut m = self.properties.clone();
        if with_metadata {
            m.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        }
        m.insert("$version".into(), Value::from(self.version));
        Value::Object(m)
    }

    /// Reads a section from JSON (`$version` required; `$metadata` optional).
    pub fn from_json(v: &Value) -> Result<TwinSection, TwinError> {
        let obj = v.as_object().ok_or(TwinError::Shape("an object section"))?;
        let version = obj
            .get("$version")
            .and_then(Value::as_u64)
            .ok_or(TwinError::Shape("$version"))?;
        let metadata = obj
            .get("$metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let properties = obj
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(TwinSection {
            properties,
            version,
            metadata,
        })
    }
}

struct Stamp<'a> {
    now: &'a str,
    version: Option<u64>,
}

impl Stamp<'_> {
    fn node(&self, meta: &mut Map<String, Value>) {
        meta.insert("$lastUpdated".into(), Value::String(self.now.to_string()));
        if let Some(v) = self.version {
            meta.insert("$lastUpdatedVersion".into(), Value::from(v));
        }
    }

    fn patch(&self, meta: &mut Map<String, Value>, patch: &Map<String, Value>) {
        for (k, v) in patch {
            match v {
                Value::Null => {
                    meta.shift_remove(k);
                }
                Value::Object(p) => {
                    let slot = meta
                        .entry(k.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = slot {
                        self.node(m);
                        self.patch(m, p);
                    }
                }
                _ => {
                    let mut m = Map::new();
                    self.node(&mut m);
                    meta.insert(k.clone(), Value::Object(m));
                }
            }
        }
    }
}

/// The twin as the device receives it on GET.
#[derive(Clone, Debug, PartialEq)]
pub struct TwinDocument {
    /// Desired properties.
    pub desired: TwinSection,
    /// Reported properties.
    pub reported: TwinSection,
}

impl TwinDocument {
    /// Parses a GET response body.
    pub fn parse(body: &[u8]) -> Result<TwinDocument, TwinError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| TwinError::Json(e.to_string()))?;
        Ok(TwinDocument {
            desired: TwinSection::from_json(v.get("desired").ok_or(TwinError::Shape("desired"))?)?,
            reported: TwinSection::from_json(
                v.get("reported").ok_or(TwinError::Shape("reported"))?,
            )?,
        })
    }

    /// Applies a reported patch the hub acknowledged as `version` (its 204 answer).
    pub fn apply_reported(&mut self, patch: &Map<String, Value>, version: u64) {
        merge_patch(&mut self.reported.properties, patch);
        self.reported.version = version;
    }

    /// Applies a desired-properties update of `version` (`$`-keys such as `$version` in
    /// the notification are not properties).
    pub fn apply_desired(&mut self, patch: &Map<String, Value>, version: u64) {
        let props: Map<String, Value> = patch
            .iter()
            .filter(|(k, _)| !k.starts_with('$'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        merge_patch(&mut self.desired.properties, &props);
        self.desired.version = version;
    }

    /// The GET response body: top-level desired and reported, no metadata.
    pub fn to_json(&self) -> Value {
        get_body(&self.desired, &self.reported)
    }
}

/// The twin GET response body the hub sends a device: desired and reported with their
/// `$version`, no `$metadata`.
pub fn get_body(desired: &TwinSection, reported: &TwinSection) -> Value {
    serde_json::json!({
        "desired": desired.to_json(false),
        "reported": reported.to_json(false),
    })
}

/// The error body the hub sends with a failed twin or method operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubError {
    /// Six-digit IoT Hub error code, e.g. 400004.
    pub error_code: u32,
    /// A tracking id.
    pub tracking_id: String,
    /// What went wrong.
    pub message: String,
    /// When, ISO-8601.
    pub timestamp_utc: String,
}

impl HubError {
    /// Reads the body (by hand rather than derived: the app is built for size). `None`
    /// unless it is a JSON object with a numeric `errorCode` and a string `message`.
    pub fn from_json(body: &[u8]) -> Option<HubError> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = |name: &str| crate::text::json_text(&v, name);
        Some(HubError {
            error_code: u32::try_from(v.get("errorCode")?.as_u64()?).ok()?,
            tracking_id: text("trackingId").unwrap_or_default(),
            message: text("message")?,
            timestamp_utc: text("timestampUtc").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}, "arr": [1, 2]}));
        merge_patch(
            &mut t,
            &obj(json!({"a": "z", "c": {"f": null, "h": 1}, "arr": [3], "new": {"x": true}})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"a": "z", "c": {"d": "e", "h": 1}, "arr": [3], "new": {"x": true}})
        );
        let mut t = obj(json!({"a": 1}));
        merge_patch(&mut t, &obj(json!({"a": {"b": 2}})));
        assert_eq!(Value::Object(t), json!({"a": {"b": 2}}));
    }

    #[test]
    fn key_rules() {
        assert!(validate_patch(&json!({"ok_key-1": {"nested": 1}})).is_ok());
        for bad in [
            json!({"": 1}),
            json!({"a.b": 1}),
            json!({"$x": 1}),
            json!({"a b": 1}),
            json!({"a\u{7}": 1}),
            json!({"o": {"in.ner": 1}}),
        ] {
            assert!(
                matches!(validate_patch(&bad), Err(TwinError::BadKey { .. })),
                "{bad}"
            );
        }
        let long = "k".repeat(1025);
        assert!(matches!(
            validate_patch(&json!({ long: 1 })),
            Err(TwinError::BadKey { .. })
        ));
        assert_eq!(validate_patch(&json!([1])), Err(TwinError::NotAnObject));
        assert_eq!(validate_patch(&json!("x")), Err(TwinError::NotAnObject));
    }

    #[test]
    fn depth_limit_matches_the_documented_example() {
        // D-TWIN: {"one": {"two": ... {"ten": {"property": "value"}}}} is valid.
        let mut v = json!({"property": "value"});
        for name in [
            "ten", "nine", "eight", "seven", "six", "five", "four", "three", "two", "one",
        ] {
            v = json!({ name: v });
        }
        assert!(validate_patch(&v).is_ok());
        let deeper = json!({"zero": v});
        assert!(matches!(
            validate_patch(&deeper),
            Err(TwinError::TooDeep { depth: 11, .. })
        ));
    }

    #[test]
    fn integer_and_string_limits() {
        assert!(validate_patch(&json!({"n": MAX_INT, "m": MIN_INT, "f": 1.5e300})).is_ok());
        assert!(matches!(
            validate_patch(&json!({"n": MAX_INT + 1})),
            Err(TwinError::IntegerOutOfRange { .. })
        ));
        assert!(matches!(
            validate_patch(&json!({"n": MIN_INT - 1})),
            Err(TwinError::IntegerOutOfRange { .. })
        ));
        assert!(matches!(
            validate_patch(&json!({"n": u64::MAX})),
            Err(TwinError::IntegerOutOfRange { .. })
        ));
        assert!(matches!(
            validate_patch(&json!({"a": [1, {"n": i64::MAX}]})),
            Err(TwinError::IntegerOutOfRange { .. })
        ));
        assert!(validate_patch(&json!({"s": "x".repeat(4096)})).is_ok());
        assert!(matches!(
            validate_patch(&json!({"s": "x".repeat(4097)})),
            Err(TwinError::StringTooLong { len: 4097, .. })
        ));
    }

    #[test]
    fn size_rule() {
        // key "abc" (3) + string "hé\u{1}" (2 counted chars) + key "n" (1) + number (8) + key "b" (1) + bool (4)
        let m = obj(json!({"abc": "hé\u{1}", "n": 5, "b": true, "$version": 3}));
        assert_eq!(section_size(&m), 3 + 2 + 1 + 8 + 1 + 4);
        assert_eq!(
            section_size(&obj(json!({"o": {"k": [true, 1]}}))),
            1 + 1 + 4 + 8
        );
        // null and empty containers are not free: a section of them cannot grow unbounded.
        assert_eq!(
            section_size(&obj(json!({"a": [null, [], {}], "b": {}}))),
            1 + 4 + 2 + 2 + 1 + 2
        );
        let nulls = Value::Array(vec![Value::Null; 10_000]);
        assert!(section_size(&obj(json!({"n": nulls}))) > MAX_SECTION_BYTES);
    }

    #[test]
    fn section_patches_bump_version_and_stamp_metadata() {
        let mut s = TwinSection::new("2026-01-01T00:00:00.000Z");
        assert_eq!(s.version, 1);
        let v = s
            .apply_patch(
                &json!({"fw": {"ver": "1.0"}, "temp": 21}),
                "2026-01-01T00:00:01.000Z",
                "desired",
                true,
            )
            .unwrap();
        assert_eq!(v, 2);
        assert_eq!(
            s.metadata["fw"]["ver"]["$lastUpdated"],
            "2026-01-01T00:00:01.000Z"
        );
        assert_eq!(s.metadata["fw"]["$lastUpdatedVersion"], 2);
        assert_eq!(s.metadata["$lastUpdatedVersion"], 2);
        let v = s
            .apply_patch(
                &json!({"temp": null}),
                "2026-01-01T00:00:02.000Z",
                "desired",
                true,
            )
            .unwrap();
        assert_eq!(v, 3);
        assert!(s.properties.get("temp").is_none());
        assert!(s.metadata.get("temp").is_none());
        assert_eq!(
            s.to_json(false),
            json!({"fw": {"ver": "1.0"}, "$version": 3})
        );
        // Reported sections carry no $lastUpdatedVersion.
        let mut r = TwinSection::new("t0");
        r.apply_patch(&json!({"a": 1}), "t1", "reported", false)
            .unwrap();
        assert!(r.metadata["a"].get("$lastUpdatedVersion").is_none());
    }

    #[test]
    fn failed_patch_changes_nothing() {
        let mut s = TwinSection::new("t0");
        s.apply_patch(&json!({"a": 1}), "t1", "reported", false)
            .unwrap();
        let before = s.clone();
        assert!(s
            .apply_patch(&json!({"b.c": 1}), "t2", "reported", false)
            .is_err());
        let big = "x".repeat(4000);
        let mut patch = Map::new();
        for i in 0..9 {
            patch.insert(format!("k{i}"), Value::String(big.clone()));
        }
        assert!(matches!(
            s.apply_patch(&Value::Object(patch), "t2", "reported", false),
            Err(TwinError::TooLarge {
                section: "reported",
                ..
            })
        ));
        assert_eq!(s, before);
    }

    #[test]
    fn replace_resets_properties() {
        let mut s = TwinSection::new("t0");
        s.apply_patch(&json!({"a": 1, "b": 2}), "t1", "desired", true)
            .unwrap();
        s.replace(&json!({"c": 3, "d": null}), "t2", "desired", true)
            .unwrap();
        assert_eq!(s.to_json(false), json!({"c": 3, "$version": 3}));
        assert!(s.metadata.get("a").is_none());
    }

    #[test]
    fn parses_the_observed_get_body() {
        let d = TwinDocument::parse(
            br#"{"desired":{"$version":1},"reported":{"temperature":32,"$version":2}}"#,
        )
        .unwrap();
        assert_eq!(d.desired.version, 1);
        assert_eq!(d.reported.version, 2);
        assert_eq!(d.reported.properties["temperature"], 32);
        assert_eq!(
            d.to_json(),
            json!({"desired":{"$version":1},"reported":{"temperature":32,"$version":2}})
        );
        assert!(matches!(TwinDocument::parse(b"{"), Err(TwinError::Json(_))));
        assert_eq!(
            TwinDocument::parse(br#"{"desired":{"$version":1}}"#),
            Err(TwinError::Shape("reported"))
        );
    }

    #[test]
    fn documents_follow_acknowledged_patches_and_desired_updates() {
        let mut d = TwinDocument::parse(
            br#"{"desired":{"a":1,"$version":3},"reported":{"x":1,"$version":7}}"#,
        )
        .unwrap();
        d.apply_reported(&obj(json!({"x": null, "y": {"z": 2}})), 8);
        assert_eq!(
            d.reported.to_json(false),
            json!({"y": {"z": 2}, "$version": 8})
        );
        d.apply_desired(&obj(json!({"b": 2, "$version": 4})), 4);
        assert_eq!(
            d.desired.to_json(false),
            json!({"a": 1, "b": 2, "$version": 4})
        );
    }

    #[test]
    fn hub_error_body() {
        let e = HubError::from_json(
            br#"{"errorCode":400004,"trackingId":"abc","message":"bad","timestampUtc":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.error_code, 400004);
        assert_eq!((e.tracking_id.as_str(), e.message.as_str()), ("abc", "bad"));
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(back["errorCode"], 400004);
        assert_eq!(back["timestampUtc"], "2026-01-01T00:00:00Z");
        // What devhub writes reads back.
        assert_eq!(
            HubError::from_json(&serde_json::to_vec(&e).unwrap()),
            Some(e)
        );
        // Optional members may be missing; the code and message may not.
        let e = HubError::from_json(br#"{"errorCode":404001,"message":"no"}"#).unwrap();
        assert_eq!((e.error_code, e.tracking_id.as_str()), (404001, ""));
        assert_eq!(
            HubError::from_json(br#"{"errorCode":"404001","message":"no"}"#),
            None
        );
        assert_eq!(HubError::from_json(br#"{"errorCode":404001}"#), None);
        assert_eq!(HubError::from_json(b"not json"), None);
    }
}
