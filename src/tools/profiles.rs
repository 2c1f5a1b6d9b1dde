//! Device profiles: several devices kept in the browser's localStorage and switched in
//! one click. A profile's key (and any ready-made SharedAccessSignature) is kept only when
//! the user asks ("remember key"); export leaves keys out unless asked too.

use serde::{Deserialize, Serialize};

use crate::ui::model::ConnectForm;

/// The localStorage key profiles live under.
pub const STORAGE_KEY: &str = "twinscope.profiles";

/// One saved device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The name shown in the list (unique).
    pub name: String,
    /// The connection string; without its key unless `remember_key`.
    pub connection_string: String,
    /// Whether the key is kept.
    #[serde(default)]
    pub remember_key: bool,
    /// The connection settings.
    #[serde(default)]
    pub settings: ConnectForm,
}

/// The saved set, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profiles {
    /// Format version.
    #[serde(default = "version")]
    pub version: u32,
    /// The profiles, in the order saved.
    pub profiles: Vec<Profile>,
}

fn version() -> u32 {
    1
}

impl Default for Profiles {
    fn default() -> Self {
        Profiles {
            version: version(),
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

impl Profiles {
    /// Reads stored or imported JSON; says what is wrong otherwise.
    pub fn from_json(text: &str) -> Result<Profiles, String> {
        let p: Profiles = serde_json::from_slice(text.as_bytes())
            .map_err(|e| format!("not a twinscope profiles file: {e}"))?;
        if p.version != 1 {
            return Err(format!(
                "profiles file version {} is not supported (expected 1)",
                p.version
            ));
        }
        for (i, x) in p.profiles.iter().enumerate() {
            if x.name.trim().is_empty() {
                return Err(format!("profile {} has no name", i + 1));
            }
        }
        Ok(p)
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
