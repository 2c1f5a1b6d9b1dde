//! IoT Plug and Play twin conventions (spec §11): the writable-property acknowledgement
//! (`{"value", "ac", "av", "ad"}`, components marked `"__t": "c"`) and a comparison of
//! desired with reported properties that understands it.

use serde_json::{json, Map, Value};

/// A desired property: its path (`prop`, or `component.prop` inside a component, or
/// `a.b` inside an object), its value, and the component it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredProperty {
    /// The component (a top-level object marked `"__t": "c"`), if any.
    pub component: Option<String>,
    /// The property name within the component (or at the top level).
    pub name: String,
    /// The desired value.
    pub value: Value,
}

/// How a desired property compares with what the device reported.
#[derive(Clone, Debug, PartialEq)]
pub enum Agreement {
    /// Reported holds the same value (plainly, or as an acknowledgement's `value`).
    Same,
    /// Reported holds another value.
    Differs,
    /// Nothing reported for it.
    NotReported,
    /// Only reported, not desired.
    OnlyReported,
}

/// One row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `name` or `component.name`.
    pub path: String,
    /// The desired value.
    pub desired: Option<Value>,
    /// The reported value (an acknowledgement's `value` when it is one).
    pub reported: Option<Value>,
    /// The acknowledgement, when reported in that shape: (ac, av, ad).
    pub ack: Option<(i64, u64, Option<String>)>,
    /// How they compare.
    pub agreement: Agreement,
}

fn is_component(v: &Value) -> bool {
    v.get("__t").and_then(Value::as_str) == Some("c")
}

fn props(section: &Map<String, Value>) -> Vec<DesiredProperty> {
    let mut out = Vec::new();
    for (k, v) in section {
        if k.starts_with('$') {
            continue;
        }
        if is_component(v) {
            for (ik, iv) in v.as_object().into_iter().flatten() {
                if ik == "__t" || ik.starts_with('$') {
                    continue;
                }
                out.push(DesiredProperty {
                    component: Some(k.clone()),
                    name: ik.clone(),
                    value: iv.clone(),
                });
            }
        } else {
            out.push(DesiredProperty {
                component: None,
                name: k.clone(),
                value: v.clone(),
            });
        }
    }
    out
}

/// The desired properties a device may acknowledge (components looked into).
pub fn desired_properties(desired: &Map<String, Value>) -> Vec<DesiredProperty> {
    props(desired)
}

fn ack_of(v: &Value) -> Option<(Value, i64, u64, Option<String>)> {
    let o = v.as_object()?;
    let ac = o.get("ac")?.as_i64()?;
    let av = o.get("av")?.as_u64()?;
    let value = o.get("value")?.clone();
    let ad = o.get("ad").and_then(Value::as_str).map(str::to_string);
    Some((value, ac, av, ad))
}

fn path(p: &DesiredProperty) -> String {
    match &p.component {
        Some(c) => format!("{c}.{}", p.name),
        None => p.name.clone(),
    }
}

/// Desired and reported side by side: every desired property with what was reported for
/// it, then properties only reported. `$`-keys (`$version`, `$metadata`) are left out.
pub fn compare(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Vec<Row> {
    let d = props(desired);
    let r = props(reported);
    let find = |p: &DesiredProperty| {
        r.iter()
            .find(|x| x.component == p.component && x.name == p.name)
    };
    let mut rows: Vec<Row> = d
        .iter()
        .map(|p| {
            let rep = find(p);
            let (reported, ack) = match rep.map(|x| (&x.value, ack_of(&x.value))) {
                None => (None, None),
                Some((_, Some((value, ac, av, ad)))) => (Some(value), Some((ac, av, ad))),
                Some((v, None)) => (Some(v.clone()), None),
            };
            let agreement = match &reported {
                None => Agreement::NotReported,
                Some(v) if *v == p.value => Agreement::Same,
                Some(_) => Agreement::Differs,
            };
            Row {
                path: path(p),
                desired: Some(p.value.clone()),
                reported,
                ack,
                agreement,
            }
        })
        .collect();
    for p in &r {
        if !d
            .iter()
            .any(|x| x.component == p.component && x.name == p.name)
        {
            let (reported, ack) = match ack_of(&p.value) {
                Some((value, ac, av, ad)) => (Some(value), Some((ac, av, ad))),
                None => (Some(p.value.clone()), None),
            };
            rows.push(Row {
                path: path(p),
                desired: None,
                reported,
                ack,
                agreement: Agreement::OnlyReported,
            });
        }
    }
    rows
}

/// The reported patch acknowledging desired property `p` at desired `version` with status
/// `ac` (200 accepted, 202 in progress, 400 rejected, 500 failed) and an optional text.
pub fn ack_patch(p: &DesiredProperty, version: u64, ac: i64, ad: Option<&str>) -> Value {
    let mut ack = json!({"value": p.value, "ac": ac, "av": version});
    if let Some(d) = ad.filter(|d| !d.is_empty()) {
        ack["ad"] = json!(d);
    }
    match &p.component {
        None => json!({ p.name.clone(): ack }),
        Some(c) => json!({ c.clone(): { "__t": "c", p.name.clone(): ack } }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn acks_have_the_convention_shape() {
        let d = desired_properties(&map(json!({"targetTemperature": 21.5, "$version": 4})));
        assert_eq!(d.len(), 1);
        assert_eq!(
            ack_patch(&d[0], 4, 200, Some("done")),
            json!({"targetTemperature": {"value": 21.5, "ac": 200, "av": 4, "ad": "done"}})
        );
        assert_eq!(
            ack_patch(&d[0], 4, 400, None),
            json!({"targetTemperature": {"value": 21.5, "ac": 400, "av": 4}})
        );
    }

    #[test]
    fn component_properties_are_acked_inside_the_component() {
        let desired = map(json!({"thermostat1": {"__t": "c", "target": 20}, "$version": 7}));
        let d = desired_properties(&desired);
        assert_eq!(d[0].component.as_deref(), Some("thermostat1"));
        assert_eq!(
            ack_patch(&d[0], 7, 200, None),
            json!({"thermostat1": {"__t": "c", "target": {"value": 20, "ac": 200, "av": 7}}})
        );
    }

    #[test]
    fn comparison_reads_acks_and_plain_values() {
        let desired = map(json!({
            "a": 1, "b": "x", "c": true, "comp": {"__t": "c", "p": 5}, "$version": 9
        }));
        let reported = map(json!({
            "a": {"value": 1, "ac": 200, "av": 9},
            "b": "y",
            "comp": {"__t": "c", "p": 5},
            "serial": "S-1",
            "$version": 3
        }));
        let rows = compare(&desired, &reported);
        let by = |p: &str| rows.iter().find(|r| r.path == p).unwrap().clone();
        assert_eq!(by("a").agreement, Agreement::Same);
        assert_eq!(by("a").ack, Some((200, 9, None)));
        assert_eq!(by("b").agreement, Agreement::Differs);
        assert_eq!(by("c").agreement, Agreement::NotReported);
        assert_eq!(by("comp.p").agreement, Agreement::Same);
        assert_eq!(by("serial").agreement, Agreement::OnlyReported);
        assert_eq!(rows.len(), 5, "no $version rows: {rows:?}");
    }
}
