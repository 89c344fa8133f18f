//! Reading one setting from text (environment variables and flags) or from TOML (the file):
//! durations as humantime strings (`30s`, `5m`, `1h 30m`, `0`), whole numbers, factors, strings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::settings::Environment;

/// A type a setting can hold: parsed from text, shown back to people, merged across layers.
pub(crate) trait SettingValue: Clone {
    /// Parses the text form; the error says what was expected.
    fn parse_text(text: &str) -> Result<Self, String>;

    /// The form shown by `check-config` (before masking).
    fn show(&self) -> String;

    /// Applies a later layer's value on top of an earlier one: replaces by default.
    fn merge_into(target: &mut Option<Self>, later: &Self) {
        *target = Some(later.clone());
    }
}

impl SettingValue for Duration {
    fn parse_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }

    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl SettingValue for usize {
    fn parse_text(text: &str) -> Result<Self, String> {
        parse_whole(text)
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for u64 {
    fn parse_text(text: &str) -> Result<Self, String> {
        parse_whole(text)
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for f64 {
    fn parse_text(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err("expected a number such as 2 or 1.5".to_string()),
        }
    }

    fn show(&self) -> String {
        // `{:?}` keeps the decimal point: 2.0 rather than 2.
        format!("{self:?}")
    }
}

impl SettingValue for bool {
    fn parse_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false".to_string()),
        }
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for String {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }

    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for Environment {
    fn parse_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|e: super::settings::UnknownEnvironment| e.to_string())
    }

    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for BTreeMap<String, String> {
    fn parse_text(_text: &str) -> Result<Self, String> {
        Err("a table: set one entry as upstream.server_settings.<name>".to_string())
    }

    fn show(&self) -> String {
        let pairs: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(", ")
    }

    /// Tables merge entry by entry, so a flag can add one server setting to the file's.
    fn merge_into(target: &mut Option<Self>, later: &Self) {
        let map = target.get_or_insert_with(BTreeMap::new);
        map.extend(later.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

/// Parses a humantime duration (`30s`, `5m`, `1h 30m`, `250ms`, `0`), refusing negatives.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("durations must not be negative".to_string());
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        if trimmed.parse::<f64>().is_ok() {
            "a duration needs a unit, e.g. 30s, 5m or 250ms".to_string()
        } else {
            format!("expected a duration such as 30s, 5m or 1h 30m ({e})")
        }
    })
}

/// Parses a duration where a plain number means seconds (`30`, `2.5`), as the `DATABASE_*`
/// fallback variables are written; humantime strings are accepted too.
pub(crate) fn parse_seconds_or_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    match trimmed.parse::<f64>() {
        Ok(secs) if secs < 0.0 || trimmed.starts_with('-') => {
            Err("durations must not be negative".to_string())
        }
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|e| e.to_string()),
        Err(_) => parse_duration(trimmed),
    }
}

fn parse_whole<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("must not be negative".to_string());
    }
    trimmed
        .parse()
        .map_err(|_| "expected a whole number such as 10".to_string())
}

/// Serde adapter for `Option<Duration>` fields written as humantime strings in the file.
pub(crate) fn de_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse_duration(&text)
        .map(Some)
        .map_err(|reason| serde::de::Error::custom(format!("{text:?}: {reason}")))
}

/// A server setting's value in the file: strings, numbers and booleans are all accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// Serde adapter for `[upstream.server_settings]`: a table of scalars, kept as text.
pub(crate) fn de_server_settings<'de, D>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    let table = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    let mut out = BTreeMap::new();
    for (name, value) in table {
        if let Err(reason) = check_server_setting_name(&name) {
            return Err(serde::de::Error::custom(format!("{name:?}: {reason}")));
        }
        let text = match value {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => if b { "on" } else { "off" }.to_string(),
        };
        out.insert(name, text);
    }
    Ok(Some(out))
}

/// A PostgreSQL parameter name: letters, digits, `_` and `.` (for `extension.setting`).
pub(crate) fn check_server_setting_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if valid {
        Ok(())
    } else {
        Err("a server setting name is letters, digits, '_' and '.'".to_string())
    }
}
