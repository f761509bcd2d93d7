//! The voice configuration as one document (`confab voice export` writes it, `confab voice
//! apply` reads it). Names are how objects refer to each other; order matters where the
//! administrator's tools say it does (rules in a dial plan, usages in a policy, routes).

use serde::{Deserialize, Serialize};

/// The whole enterprise voice configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceConfig {
    /// Dial plans (location profiles), each with its normalization rules in order.
    #[serde(default, rename = "dial_plan", skip_serializing_if = "Vec::is_empty")]
    pub dial_plans: Vec<DialPlan>,
    /// The PSTN usages (names that link policies to routes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    #[serde(default, rename = "policy", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<VoicePolicy>,
    /// Routes, tried in this order within a usage.
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "trunk", skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<Trunk>,
    /// Emergency numbers per site (or global).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergency: Vec<Emergency>,
    /// Where calls to numbers nobody holds go, per range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unassigned: Vec<Unassigned>,
}

/// Where a dial plan or voice policy applies: to users it is assigned to, to a pool's users,
/// to a site's, or to everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    Global,
    Site(String),
    Pool(String),
    /// Applies only to users it is assigned to.
    User,
}

impl Scope {
    fn text(&self) -> String {
        match self {
            Self::Global => "global".into(),
            Self::Site(s) => format!("site:{s}"),
            Self::Pool(p) => format!("pool:{p}"),
            Self::User => "user".into(),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "global" => Ok(Self::Global),
            None if s == "user" => Ok(Self::User),
            Some(("site", name)) if !name.is_empty() => Ok(Self::Site(name.to_owned())),
            Some(("pool", fqdn)) if !fqdn.is_empty() => Ok(Self::Pool(fqdn.to_ascii_lowercase())),
            _ => Err(format!(
                "scope {s:?}: use global, site:NAME, pool:FQDN or user"
            )),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// A dial plan: what users dial, turned into E.164 by the first rule that matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialPlan {
    pub name: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default, rename = "rule", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<NormalizationRule>,
}

/// One normalization rule (New-CsVoiceNormalizationRule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizationRule {
    pub name: String,
    /// A regular expression over the dialled string (anchor it: `^...$`).
    pub pattern: String,
    /// The result; `$1`.. are the pattern's groups.
    pub translation: String,
    /// The result is an internal extension (never sent to the phone network).
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal_extension: bool,
}

/// A voice policy: the PSTN usages its users may call through, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoicePolicy {
    pub name: String,
    #[serde(default)]
    pub scope: Scope,
    pub usages: Vec<String>,
}

/// A voice route: numbers it matches, the usages it serves, the trunks that carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// A regular expression over the E.164 number (`^\+1\d{10}$`).
    pub pattern: String,
    pub usages: Vec<String>,
    /// Trunks, sharing the load in turn and failed over in this order.
    pub trunks: Vec<String>,
    /// The caller's identity on calls through this route.
    #[serde(default, skip_serializing_if = "is_default")]
    pub caller_id: CallerId,
}

/// What a route does with the caller's identity (P-Asserted-Identity and, per trunk, From).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerId {
    /// The caller's Line URI.
    #[default]
    Keep,
    /// Withheld (anonymous).
    Suppress,
    /// Replaced by this number (a main number): `tel:+14255550100`.
    Replace(String),
}

/// A trunk: a gateway (IP-PBX, SBC, carrier) and how numbers are written toward it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    pub name: String,
    pub gateway: Gateway,
    /// Seconds without an answer before the next trunk is tried.
    #[serde(default = "ten", skip_serializing_if = "is_ten")]
    pub failover_after: u32,
    /// The caller's number goes in From too (else only in P-Asserted-Identity).
    #[serde(default, skip_serializing_if = "is_false")]
    pub caller_in_from: bool,
    /// Rules for the called number on the way out (first match applies; none: unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub called: Vec<NormalizationRule>,
    /// Rules for the calling number on the way out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calling: Vec<NormalizationRule>,
    /// Rules for numbers arriving from the gateway, before normalization to E.164.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<NormalizationRule>,
}

/// Where a trunk's gateway is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// An address or FQDN.
    pub host: String,
    #[serde(default = "sip_port")]
    pub port: u16,
    #[serde(default)]
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    #[default]
    Tcp,
    Tls,
}

/// Emergency numbers of a site (or of every site): always routed, on `usage`, for every user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    /// The site; none: every site without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The numbers (911, 112, 999).
    pub numbers: Vec<String>,
    /// What users may dial for them too (`9911`), each to the number at the same position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<String>,
    /// The usage whose routes carry them.
    pub usage: String,
}

/// A range of numbers nobody may hold, and where calls to them go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unassigned {
    pub name: String,
    /// First and last number of the range (E.164, same length).
    pub first: String,
    pub last: String,
    /// A number to send such calls to (an operator, an announcement); none: 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
fn ten() -> u32 {
    10
}
fn is_ten(v: &u32) -> bool {
    *v == 10
}
fn sip_port() -> u16 {
    5060
}

impl VoiceConfig {
    /// Reads the document (TOML).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Writes the document (TOML).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}
