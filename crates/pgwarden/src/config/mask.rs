//! Hides passwords in connection strings before they are shown: the password of any URL
//! (`scheme://user:secret@host`) and any `password=value` (query parameter or libpq key/value
//! form) become `***`.

use std::ops::Range;

/// What a hidden secret is shown as.
pub(crate) const MASK: &str = "***";

/// `text` with every password replaced by `***`.
pub(crate) fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in secret_spans(text) {
        out.push_str(&text[last..span.start]);
        out.push_str(MASK);
        last = span.end;
    }
    out.push_str(&text[last..]);
    out
}

/// `message` with every password found in `original` replaced by `***`, for messages from
/// parsers that may echo parts of the input.
pub(crate) fn redact_from(message: &str, original: &str) -> String {
    let mut out = mask_secrets(message);
    for span in secret_spans(original) {
        let secret = &original[span];
        if !secret.is_empty() {
            out = out.replace(secret, MASK);
        }
    }
    out
}

/// Byte ranges of the secrets in `text`, in order, not overlapping, never empty.
fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    if let Some(span) = url_password(text) {
        spans.push(span);
    }
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let start = from + found + "password=".len();
        let end = value_end(text, start);
        if end > start && !spans.iter().any(|s| s.start < end && start < s.end) {
            spans.push(start..end);
        }
        from = end.max(start);
    }
    spans.sort_by_key(|s| s.start);
    spans
}

/// The password inside the authority of a `scheme://user:password@host` URL.
fn url_password(text: &str) -> Option<Range<usize>> {
    let authority_start = text.find("://")? + 3;
    let rest = &text[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    let colon = rest[..at].find(':')?;
    let range = authority_start + colon + 1..authority_start + at;
    (!range.is_empty()).then_some(range)
}

/// Where a `password=` value that starts at `start` ends: a quoted value at its closing quote,
/// otherwise at `&`, whitespace or the end.
fn value_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    if let Some(quoted) = rest.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '\'' if !escaped => return start + 1 + i + 1,
                _ => escaped = false,
            }
        }
        return text.len();
    }
    start
        + rest
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_url_passwords() {
        assert_eq!(
            mask_secrets("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            mask_secrets("rediss://:pw@cache:6380/0"),
            "rediss://:***@cache:6380/0"
        );
        // The last '@' ends the userinfo, so an '@' inside the password is masked too.
        assert_eq!(
            mask_secrets("postgres://u:p@ss@h/db"),
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        let url = "postgres://postgres@127.0.0.1:5432/postgres";
        assert_eq!(mask_secrets(url), url);
        assert_eq!(mask_secrets("redis://cache:6379"), "redis://cache:6379");
        // A ':' after the authority is not a password separator.
        assert_eq!(
            mask_secrets("postgres://h/db?x=a:b@c"),
            "postgres://h/db?x=a:b@c"
        );
    }

    #[test]
    fn masks_password_parameters() {
        assert_eq!(
            mask_secrets("postgres://u@h/db?sslmode=disable&password=hunter2&x=1"),
            "postgres://u@h/db?sslmode=disable&password=***&x=1"
        );
        assert_eq!(
            mask_secrets("host=db user=app password=hunter2 dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(
            mask_secrets("host=db password='hun ter\\'2' user=x"),
            "host=db password=*** user=x"
        );
    }

    #[test]
    fn redacts_echoed_secrets_from_messages() {
        let original = "postgres://u:hunter2@h:notaport/db";
        let message = "invalid port in \"u:hunter2@h:notaport\"";
        assert_eq!(
            redact_from(message, original),
            "invalid port in \"u:***@h:notaport\""
        );
    }
}
