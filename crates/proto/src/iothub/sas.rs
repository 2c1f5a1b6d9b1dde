//! Shared access signature tokens (D-SAS).
//!
//! ```text
//! SharedAccessSignature sr={enc(resource)}&sig={enc(base64(HMAC-SHA256(key, toSign)))}&se={expiry}[&skn={enc(policy)}]
//! toSign = enc(resource) + "\n" + expiry
//! ```
//!
//! `enc` is [`super::encoding::encode`]; the key is the base64-decoded shared access key.
//! Tokens are built in the field order sr, sig, se, skn (C and Python SDKs); parsing takes
//! the fields in any order. Verification signs the `sr` exactly as it appears in the token
//! (the hub evidently does: `%2F` and `%2f` give different signatures) and compares in
//! constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::connstr::SymmetricKey;
use super::encoding;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "SharedAccessSignature ";

/// base64(HMAC-SHA256(key, data)).
pub fn sign(key: &[u8], data: &[u8]) -> String {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The latest expiry a token may carry: 9999-12-31T23:59:59Z, the last second .NET's
/// `DateTime` (in which IoT Hub's services hold times) can represent. No lifetime limit is
/// documented for device tokens; this is the bound past which a hub cannot read `se` at all,
/// and it keeps `se * 1000` (milliseconds) far from overflowing.
pub const MAX_EXPIRY: u64 = 253_402_300_799;

/// Builds a token for `resource` (e.g. `myhub.azure-devices.net/devices/dev-01`),
/// valid until `expiry` (seconds since 1970), optionally for a policy.
pub fn build_token(
    resource: &str,
    key: &SymmetricKey,
    expiry: u64,
    policy: Option<&str>,
) -> String {
    let sr = encoding::encode(resource);
    let sig = sign(key.as_bytes(), format!("{sr}\n{expiry}").as_bytes());
    let mut t = format!("{PREFIX}sr={sr}&sig={}&se={expiry}", encoding::encode(&sig));
    if let Some(p) = policy {
        t.push_str("&skn=");
        t.push_str(&encoding::encode(p));
    }
    t
}

/// The DPS group-enrollment device key: base64(HMAC-SHA256(group key, registration id)).
pub fn derive_device_key(group_key: &SymmetricKey, registration_id: &str) -> String {
    sign(group_key.as_bytes(), registration_id.as_bytes())
}

/// A parsed token.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` decoded: the resource URI the token grants.
    pub resource: String,
    /// `sr` exactly as it appeared (what was signed).
    sr_raw: String,
    /// The signature bytes.
    signature: Vec<u8>,
    /// `se`: expiry, seconds since 1970.
    pub expiry: u64,
    /// `skn` decoded: the policy name, if any.
    pub policy: Option<String>,
}

impl std::fmt::Debug for SasToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SasToken")
            .field("resource", &self.resource)
            .field("expiry", &self.expiry)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a token is malformed or not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// Does not start with `SharedAccessSignature `.
    #[error("token does not start with \"SharedAccessSignature \"")]
    NoPrefix,
    /// A field is not `name=value`.
    #[error("token field {0} is not name=value")]
    BadField(usize),
    /// A field appears twice.
    #[error("token field {0} appears twice")]
    Duplicate(&'static str),
    /// A required field is missing.
    #[error("token has no {0} field")]
    Missing(&'static str),
    /// `se` is not a number.
    #[error("token expiry (se) is not a number of seconds")]
    BadExpiry,
    /// `sig` is not base64 of 32 bytes, or a value is not UTF-8 once decoded.
    #[error("token {0} is malformed")]
    BadValue(&'static str),
    /// The token has expired.
    #[error("token expired at {expiry} (now {now})")]
    Expired {
        /// `se`.
        expiry: u64,
        /// The time it was checked.
        now: u64,
    },
    /// The expiry is later than the hub can represent.
    #[error("token expiry {expiry} is after 9999-12-31 (seconds since 1970 must be at most {MAX_EXPIRY}); use a lifetime of days or months")]
    TooFar {
        /// `se`.
        expiry: u64,
    },
    /// The signature does not match the key.
    #[error("token signature does not match the key")]
    BadSignature,
    /// The token's resource does not cover the identity.
    #[error("token resource {} does not cover {}", crate::text::Quoted(.resource), crate::text::Quoted(.wanted))]
    WrongResource {
        /// `sr`, decoded.
        resource: String,
        /// The resource the caller needed.
        wanted: String,
    },
}

impl SasToken {
    /// Parses a token, fields in any order. Unknown fields are ignored.
    pub fn parse(token: &str) -> Result<SasToken, SasError> {
        let body = token
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SasError::NoPrefix)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for (i, field) in body.split('&').enumerate() {
            let (name, value) = field.split_once('=').ok_or(SasError::BadField(i + 1))?;
            let (label, slot) = match name {
                "sr" => ("sr", &mut sr),
                "sig" => ("sig", &mut sig),
                "se" => ("se", &mut se),
                "skn" => ("skn", &mut skn),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SasError::Duplicate(label));
            }
        }
        let sr_raw = sr.ok_or(SasError::Missing("sr"))?;
        let sig = sig.ok_or(SasError::Missing("sig"))?;
        let se = se.ok_or(SasError::Missing("se"))?;
        let expiry = se.parse().map_err(|_| SasError::BadExpiry)?;
        let resource = encoding::decode(sr_raw).ok_or(SasError::BadValue("sr"))?;
        let signature = encoding::decode(sig)
            .and_then(|s| STANDARD.decode(s).ok())
            .filter(|b| b.len() == 32)
            .ok_or(SasError::BadValue("sig"))?;
        let policy = skn
            .map(|p| encoding::decode(p).ok_or(SasError::BadValue("skn")))
            .transpose()?;
        Ok(SasToken {
            resource,
            sr_raw: sr_raw.to_string(),
            signature,
            expiry,
            policy,
        })
    }

    /// Checks the signature against `key` in constant time.
    pub fn verify_signature(&self, key: &SymmetricKey) -> Result<(), SasError> {
        let mut mac =
            HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
        mac.update(format!("{}\n{}", self.sr_raw, self.expiry).as_bytes());
        mac.verify_slice(&self.signature)
            .map_err(|_| SasError::BadSignature)
    }

    /// Checks expiry against `now` (seconds since 1970): not passed, and no later than
    /// [`MAX_EXPIRY`].
    pub fn check_expiry(&self, now: u64) -> Result<(), SasError> {
        if self.expiry > MAX_EXPIRY {
            return Err(SasError::TooFar {
                expiry: self.expiry,
            });
        }
        if self.expiry <= now {
            Err(SasError::Expired {
                expiry: self.expiry,
                now,
            })
        } else {
            Ok(())
        }
    }

    /// Checks that the token's resource is `wanted` or a path-segment prefix of it
    /// (`hub/devices` covers `hub/devices/d1`; `hub/devices/d` does not). Host names
    /// compare case-insensitively, paths exactly; a trailing `/` is ignored.
    pub fn check_resource(&self, wanted: &str) -> Result<(), SasError> {
        let norm = |s: &str| {
            let s = s.trim_end_matches('/');
            match s.split_once('/') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p.to_string())),
                None => (s.to_ascii_lowercase(), None),
            }
        };
        let (have_host, have_path) = norm(&self.resource);
        let (want_host, want_path) = norm(wanted);
        let covers = have_host == want_host
            && match (&have_path, &want_path) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(h), Some(w)) => w == h || w.starts_with(&format!("{h}/")),
            };
        if covers {
            Ok(())
        } else {
            Err(SasError::WrongResource {
                resource: self.resource.clone(),
                wanted: wanted.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY1: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    fn key(s: &str) -> SymmetricKey {
        SymmetricKey::from_base64(s).unwrap()
    }

    #[test]
    fn vector_v1_device_token() {
        let t = build_token(
            "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test",
            &key(KEY1),
            1471940363,
            None,
        );
        assert_eq!(
            t,
            "SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test&sig=SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D&se=1471940363"
        );
    }

    #[test]
    fn vector_v1_lower_case_escapes_sign_differently() {
        let sig = sign(
            key(KEY1).as_bytes(),
            b"iot-hub-for-test.azure-devices.net%2fdevices%2fiot-device-for-test\n1471940363",
        );
        assert_eq!(sig, "kpPd03nBPQvmGX6lLUYgpB+VZN9uuoqsIw+8g4CkkAY=");
    }

    #[test]
    fn vectors_v2_v3_policy_tokens() {
        let t = build_token(
            "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test/modules/module-for-test",
            &key(KEY1),
            1471940363,
            Some("iothubowner"),
        );
        assert_eq!(
            t,
            "SharedAccessSignature sr=iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test%2Fmodules%2Fmodule-for-test&sig=JwAxBBBPYA0E%2FTHdnrXzUfBfuZ7deH6pppCniJ23Uu0%3D&se=1471940363&skn=iothubowner"
        );
        let t = build_token(
            "iot-hub-for-test.azure-devices.net",
            &key(KEY1),
            1471940363,
            Some("iothubowner"),
        );
        assert!(
            t.contains("&sig=770sPjjYxRYpNz8%2FhEN7XR5XU5KDGYGTinSP8YyeTXw%3D&"),
            "{t}"
        );
    }

    #[test]
    fn vector_v4_non_canonical_key() {
        assert_eq!(
            build_token("host/devices/device", &key("key"), 12345, None),
            "SharedAccessSignature sr=host%2Fdevices%2Fdevice&sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345"
        );
    }

    #[test]
    fn vector_v5_encoded_policy_any_order() {
        // Node emits sr, sig, skn, se; we emit sr, sig, se, skn. Same fields, same signature.
        let ours = build_token("uri", &key("cGFzc3dvcmQ="), 12345, Some("encode('Me')"));
        assert_eq!(
            ours,
            "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345&skn=encode%28%27Me%27%29"
        );
        let node = "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&skn=encode%28%27Me%27%29&se=12345";
        let t = SasToken::parse(node).unwrap();
        assert_eq!(t.policy.as_deref(), Some("encode('Me')"));
        assert_eq!(t, SasToken::parse(&ours).unwrap());
        t.verify_signature(&key("cGFzc3dvcmQ=")).unwrap();
    }

    #[test]
    fn vectors_v6_v7_hmac_only() {
        assert_eq!(
            sign(
                key("NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=").as_bytes(),
                b"sign this message"
            ),
            "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="
        );
        assert_eq!(
            sign(key("cGFzc3dvcmQ=").as_bytes(), b"string-to-sign"),
            "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4="
        );
    }

    #[test]
    fn vector_d1_dps_derived_key_and_d3_registration_token() {
        let group = key("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==");
        let derived = derive_device_key(&group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6");
        assert_eq!(derived, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
        let t = build_token(
            "0ne00000000/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
            &key(&derived),
            1700000000,
            Some("registration"),
        );
        assert!(
            t.ends_with("&sig=UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng%3D&se=1700000000&skn=registration"),
            "{t}"
        );
    }

    #[test]
    fn vector_d2_dps_derived_key_from_a_long_group_key() {
        // Azure/azure-iot-cli-extension azext_iot/tests/dps/__init__.py: TEST_ENDORSEMENT_KEY,
        // registration id "myarbitrarydeviceId", GENERATED_KEY.
        let group = key(concat!(
            "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAibym9HQP9vxCGF5dVc1Q",
            "QsAGe021aUGJzNol1/gycBx3jFsTpwmWbISRwnFvflWd0w2Mc44FAAZNaJOAAxwZvG8GvyLlHh6fGKdh+mSBL4iLH2bZ4Ry22cB3",
            "CJVjXmdGoz9Y/j3/NwLndBxQC+baNvzvyVQZ4/A2YL7vzIIj2ik4y+ve9ir7U0GbNdnxskqK1KFIITVVtkTIYyyFTIR0BySjPrRI",
            "Dj7r7Mh5uF9HBppGKQCBoVSVV8dI91lNazmSdpGWyqCkO7iM4VvUMv2HT/ym53aYlUrau+Qq87Tu+uQipWYgRdF11KDfcpMHqqzB",
            "QQ1NpOJVhrsTrhyJzO7KNw==",
        ));
        assert_eq!(
            derive_device_key(&group, "myarbitrarydeviceId"),
            "cT/EXZvsplPEpT//p98Pc6sKh8mY3kYgSxavHwMkl7w="
        );
    }

    #[test]
    fn verify_accepts_own_tokens_and_rejects_tampering() {
        let k = key(KEY1);
        let t = build_token("h.net/devices/d1", &k, 2000, None);
        let p = SasToken::parse(&t).unwrap();
        p.verify_signature(&k).unwrap();
        p.check_expiry(1999).unwrap();
        assert_eq!(
            p.check_expiry(2000),
            Err(SasError::Expired {
                expiry: 2000,
                now: 2000
            })
        );
        assert_eq!(
            SasToken::parse(&t).unwrap().verify_signature(&key("a2V5")),
            Err(SasError::BadSignature)
        );
        // Changing the expiry breaks the signature.
        let forged = SasToken::parse(&t.replace("se=2000", "se=9999")).unwrap();
        assert_eq!(forged.verify_signature(&k), Err(SasError::BadSignature));
        // The signature covers sr as sent: lower-case escapes do not verify.
        let lower = SasToken::parse(&t.replace("%2F", "%2f")).unwrap();
        assert_eq!(lower.verify_signature(&k), Err(SasError::BadSignature));
    }

    #[test]
    fn resource_scope_is_by_segment() {
        let t = |sr: &str| SasToken::parse(&build_token(sr, &key("a2V5"), 1, None)).unwrap();
        t("h.net/devices/d1")
            .check_resource("h.net/devices/d1")
            .unwrap();
        t("H.NET/devices/d1")
            .check_resource("h.net/devices/d1")
            .unwrap();
        t("h.net/devices")
            .check_resource("h.net/devices/d1/modules/m")
            .unwrap();
        t("h.net").check_resource("h.net/devices/d1").unwrap();
        t("h.net/devices/d1/")
            .check_resource("h.net/devices/d1")
            .unwrap();
        assert!(t("h.net/devices/d")
            .check_resource("h.net/devices/d1")
            .is_err());
        assert!(t("h.net/devices/d1")
            .check_resource("h.net/devices/D1")
            .is_err());
        assert!(t("h.net/devices/d1")
            .check_resource("other.net/devices/d1")
            .is_err());
        assert!(t("h.net/devices/d1/modules/m")
            .check_resource("h.net/devices/d1")
            .is_err());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(SasToken::parse("sr=a&sig=b&se=1"), Err(SasError::NoPrefix));
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&se=1"),
            Err(SasError::Missing("sig"))
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sr=b"),
            Err(SasError::Duplicate("sr"))
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr"),
            Err(SasError::BadField(1))
        );
        let good = build_token("h/devices/d", &key("a2V5"), 5, None);
        assert_eq!(
            SasToken::parse(&good.replace("se=5", "se=x")),
            Err(SasError::BadExpiry)
        );
        assert_eq!(
            SasToken::parse("SharedAccessSignature sr=a&sig=AAAA&se=1"),
            Err(SasError::BadValue("sig"))
        );
        // Debug does not show the signature.
        assert!(!format!("{:?}", SasToken::parse(&good).unwrap()).contains("sig"));
    }
}
