//! Device profiles: several devices kept in the browser's localStorage and switched in
//! one click. A profile's key (and any ready-made SharedAccessSignature) is kept only when
//! the user asks ("remember key"); export leaves keys out unless asked too.

use serde::Serialize;
use serde_json::Value;

use crate::ui::model::ConnectForm;

/// The localStorage key profiles live under.
pub const STORAGE_KEY: &str = "twinscope.profiles";

/// One saved device. Written with serde; read by hand from a `serde_json::Value`
/// ([`Profiles::from_json`]): a derived reader cost the app 9 KB of wasm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The name shown in the list (unique).
    pub name: String,
    /// The connection string; without its key unless `remember_key`.
    pub connection_string: String,
    /// Whether the key is kept.
    pub remember_key: bool,
    /// The connection settings.
    pub settings: ConnectForm,
}

/// The saved set, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profiles {
    /// Format version.
    pub version: u32,
    /// The profiles, in the order saved.
    pub profiles: Vec<Profile>,
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            version: 1,
            profiles: Vec::new(),
        }
    }
}

/// Parts of a connection string that are secrets.
const SECRET_FIELDS: [&str; 2] = ["sharedaccesskey", "sharedaccesssignature"];

/// `cs` with its key and signature values removed (the names stay, empty, so the user
/// sees where to paste the key). Works on any text, parseable or not.
pub fn redact(cs: &str) -> String {
    cs.split(';')
        .map(|part| match part.split_once('=') {
            Some((name, _))
                if SECRET_FIELDS.contains(&name.trim().to_ascii_lowercase().as_str()) =>
            {
                format!("{}=", name.trim())
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Whether `cs` carries a key or a signature.
pub fn has_secret(cs: &str) -> bool {
    redact(cs) != cs
}

impl Profile {
    /// A profile of the form as it is now; the key kept only if `remember_key`.
    pub fn new(
        name: &str,
        cs: &str,
        remember_key: bool,
        settings: ConnectForm,
    ) -> Result<Profile, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("give the profile a name".into());
        }
        if cs.trim().is_empty() {
            return Err("there is no connection string to save".into());
        }
        Ok(Profile {
            name: name.to_string(),
            connection_string: if remember_key {
                cs.trim().to_string()
            } else {
                redact(cs.trim())
            },
            remember_key,
            settings,
        })
    }

    /// `device @ hub` from the connection string, when it reads.
    pub fn summary(&self) -> String {
        let field = |want: &str| {
            self.connection_string.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case(want)).then(|| v.trim().to_string())
            })
        };
        match (field("DeviceId"), field("ModuleId"), field("HostName")) {
            (Some(d), Some(m), Some(h)) => format!("{d}/{m} @ {h}"),
            (Some(d), None, Some(h)) => format!("{d} @ {h}"),
            _ => "(incomplete connection string)".into(),
        }
    }
}

/// A JSON object's optional field: `None` when absent, else `read` of it, or an error that
/// names the field and the type it needs.
pub(crate) fn field<'v, T>(
    v: &'v Value,
    name: &str,
    kind: &str,
    read: impl Fn(&'v Value) -> Option<T>,
) -> Result<Option<T>, String> {
    v.get(name)
        .map(|x| read(x).ok_or_else(|| format!("\"{name}\" must be {kind}")))
        .transpose()
}

/// A string field.
pub(crate) fn str_field(v: &Value, name: &str) -> Result<Option<String>, String> {
    field(v, name, "a string", |x| x.as_str().map(str::to_string))
}

/// A true/false field.
pub(crate) fn bool_field(v: &Value, name: &str) -> Result<Option<bool>, String> {
    field(v, name, "true or false", Value::as_bool)
}

impl Profile {
    fn from_value(v: &Value) -> Result<Profile, String> {
        if !v.is_object() {
            return Err("must be an object".into());
        }
        let settings = match v.get("settings") {
            None => ConnectForm::default(),
            Some(s) => ConnectForm::from_value(s).map_err(|e| format!("settings: {e}"))?,
        };
        Ok(Profile {
            name: str_field(v, "name")?.ok_or("has no \"name\"")?,
            connection_string: str_field(v, "connectionString")?
                .ok_or("has no \"connectionString\"")?,
            remember_key: bool_field(v, "rememberKey")?.unwrap_or(false),
            settings,
        })
    }
}

impl Profiles {
    /// Reads stored or imported JSON; says what is wrong otherwise.
    pub fn from_json(text: &str) -> Result<Profiles, String> {
        let bad = |e: String| format!("not a twinscope profiles file: {e}");
        let v: Value = serde_json::from_slice(text.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if !v.is_object() {
            return Err(bad(
                "it must be a JSON object with a \"profiles\" list".into()
            ));
        }
        let version = field(&v, "version", "a whole number", Value::as_u64)
            .map_err(bad)?
            .unwrap_or(1);
        if version != 1 {
            return Err(format!(
                "profiles file version {version} is not supported (expected 1)"
            ));
        }
        let list = field(&v, "profiles", "a list", Value::as_array)
            .map_err(bad)?
            .ok_or_else(|| bad("it has no \"profiles\" list".into()))?;
        let mut profiles = Vec::with_capacity(list.len());
        for (i, p) in list.iter().enumerate() {
            let p = Profile::from_value(p).map_err(|e| bad(format!("profile {}: {e}", i + 1)))?;
            if p.name.trim().is_empty() {
                return Err(format!("profile {} has no name", i + 1));
            }
            profiles.push(p);
        }
        Ok(Profiles {
            version: 1,
            profiles,
        })
    }

    /// For storage: keys kept where the profile says so.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// For export: keys left out unless `with_keys` (pretty-printed).
    pub fn export(&self, with_keys: bool) -> String {
        let mut out = self.clone();
        if !with_keys {
            for p in &mut out.profiles {
                p.connection_string = redact(&p.connection_string);
                p.remember_key = false;
            }
        }
        serde_json::to_string_pretty(&out).unwrap_or_default()
    }

    /// Saves `p`, replacing a profile of the same name.
    pub fn upsert(&mut self, p: Profile) {
        match self.profiles.iter_mut().find(|x| x.name == p.name) {
            Some(slot) => *slot = p,
            None => self.profiles.push(p),
        }
    }

    /// Merges imported profiles (same names replaced); returns how many.
    pub fn import(&mut self, other: Profiles) -> usize {
        let n = other.profiles.len();
        for p in other.profiles {
            self.upsert(p);
        }
        n
    }

    /// Removes the profile named `name`.
    pub fn remove(&mut self, name: &str) {
        self.profiles.retain(|p| p.name != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: &str = "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=c2VjcmV0";

    #[test]
    fn keys_are_kept_only_when_asked() {
        let p = Profile::new("lab", CS, false, ConnectForm::default()).unwrap();
        assert_eq!(
            p.connection_string,
            "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey="
        );
        assert!(!has_secret(&p.connection_string));
        let q = Profile::new("lab", CS, true, ConnectForm::default()).unwrap();
        assert_eq!(q.connection_string, CS);
        assert_eq!(p.summary(), "d1 @ h.azure-devices.net");
        assert!(Profile::new(" ", CS, false, ConnectForm::default()).is_err());
        assert!(Profile::new("x", "", false, ConnectForm::default()).is_err());
    }

    #[test]
    fn signatures_are_secrets_too() {
        let cs =
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=abc&se=1";
        assert_eq!(redact(cs), "HostName=h;DeviceId=d;SharedAccessSignature=");
        assert_eq!(redact("not a connection string"), "not a connection string");
        assert_eq!(
            redact("hostname=h;sharedaccesskey=k"),
            "hostname=h;sharedaccesskey="
        );
    }

    #[test]
    fn export_leaves_keys_out_unless_asked_and_import_merges_by_name() {
        let mut all = Profiles::default();
        all.upsert(Profile::new("a", CS, true, ConnectForm::default()).unwrap());
        all.upsert(Profile::new("b", CS, false, ConnectForm::default()).unwrap());
        let out = all.export(false);
        assert!(!out.contains("c2VjcmV0"), "{out}");
        assert!(all.export(true).contains("c2VjcmV0"));
        let back = Profiles::from_json(&out).unwrap();
        assert_eq!(back.profiles.len(), 2);
        assert!(back.profiles.iter().all(|p| !p.remember_key));

        let mut mine = Profiles::default();
        mine.upsert(
            Profile::new(
                "a",
                "HostName=old;DeviceId=x;SharedAccessKey=",
                false,
                ConnectForm::default(),
            )
            .unwrap(),
        );
        assert_eq!(mine.import(back), 2);
        assert_eq!(mine.profiles.len(), 2);
        assert_eq!(mine.profiles[0].summary(), "d1 @ h.azure-devices.net");
        mine.remove("a");
        assert_eq!(mine.profiles.len(), 1);
        // The stored form round-trips with settings.
        let s = ConnectForm {
            model_id: "dtmi:x;1".into(),
            ..ConnectForm::default()
        };
        mine.upsert(Profile::new("c", CS, false, s.clone()).unwrap());
        assert_eq!(
            Profiles::from_json(&mine.to_json()).unwrap().profiles[1].settings,
            s
        );
    }

    #[test]
    fn every_setting_round_trips_and_a_wrong_type_is_named() {
        let s = ConnectForm {
            endpoint: "ws://127.0.0.1:8080/$iothub/websocket".into(),
            ttl_min: "5".into(),
            clean_session: true,
            keep_alive: "30".into(),
            api_version: "2021-04-12".into(),
            model_id: "dtmi:x;1".into(),
            will_body: "{\"bye\":1}".into(),
            will_props: "a=1".into(),
        };
        let mut all = Profiles::default();
        all.upsert(Profile::new("k", CS, true, s.clone()).unwrap());
        assert_eq!(Profiles::from_json(&all.to_json()).unwrap(), all);

        // Missing settings and fields take their defaults.
        let p =
            Profiles::from_json(r#"{"profiles":[{"name":"n","connectionString":"x"}]}"#).unwrap();
        assert_eq!(p.profiles[0].settings, ConnectForm::default());
        assert!(!p.profiles[0].remember_key);

        let err = |text: &str| Profiles::from_json(text).unwrap_err();
        assert!(err("{").contains("not a twinscope profiles file"));
        assert!(err(r#"{"profiles":{}}"#).contains("\"profiles\" must be a list"));
        assert!(
            err(r#"{"version":"1","profiles":[]}"#).contains("\"version\" must be a whole number")
        );
        assert!(err(r#"{"profiles":[7]}"#).contains("profile 1: must be an object"));
        assert!(err(r#"{"profiles":[{"connectionString":"x"}]}"#)
            .contains("profile 1: has no \"name\""));
        assert!(err(r#"{"profiles":[{"name":"n"}]}"#).contains("has no \"connectionString\""));
        let e =
            err(r#"{"profiles":[{"name":"n","connectionString":"x","settings":{"ttlMin":5}}]}"#);
        assert!(
            e.contains("profile 1: settings: \"ttlMin\" must be a string"),
            "{e}"
        );
        let e = err(r#"{"profiles":[{"name":"n","connectionString":"x","rememberKey":"yes"}]}"#);
        assert!(e.contains("\"rememberKey\" must be true or false"), "{e}");
    }

    #[test]
    fn bad_files_are_refused_in_words() {
        assert!(Profiles::from_json("[]")
            .unwrap_err()
            .contains("not a twinscope profiles file"));
        assert!(Profiles::from_json(r#"{"version":2,"profiles":[]}"#)
            .unwrap_err()
            .contains("version 2"));
        assert!(
            Profiles::from_json(r#"{"profiles":[{"name":"","connectionString":"x"}]}"#)
                .unwrap_err()
                .contains("no name")
        );
        assert_eq!(
            Profiles::from_json(r#"{"profiles":[]}"#).unwrap().version,
            1
        );
    }
}
