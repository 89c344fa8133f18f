//! The effective configuration as a table for people: key, value (passwords masked), source.

use std::fmt::Write;

use super::load::Loaded;

impl Loaded {
    /// A table of every key, its effective value and where it came from, one key per line
    /// under a header line. Passwords in URLs are shown as `***`.
    pub fn render(&self) -> String {
        let header = ("KEY", "VALUE", "SOURCE");
        let key_width = self
            .entries
            .iter()
            .map(|e| e.key.len())
            .chain([header.0.len()])
            .max()
            .unwrap_or(0);
        let value_width = self
            .entries
            .iter()
            .map(|e| e.value.chars().count())
            .chain([header.1.len()])
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        let mut row = |key: &str, value: &str, source: &str| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key:<key_width$}  {value:<value_width$}  {source}");
        };
        row(header.0, header.1, header.2);
        for entry in &self.entries {
            row(&entry.key, &entry.value, &entry.source.to_string());
        }
        out
    }
}
