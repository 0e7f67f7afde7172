//! The import body: tokens that exist elsewhere (in the Controller), moved by their plaintext
//! (digested here and dropped) or by their SHA-256 digest.
//!
//! Read from JSON by hand rather than through serde's derive, so that no refusal can quote a
//! value: a secret put in the wrong field must not come back in an error message.

use serde_json::{Map, Value};

use crate::registry::ImportEntry;
use crate::time::{UnixSeconds, parse_rfc3339};
use crate::token::{DIGEST_ONLY_HINT, RawSpec, TokenDigest, TokenSecret, TokenSpec};

/// The most tokens one import may carry.
pub const MAX_IMPORT: usize = 100_000;

const ENTRY_FIELDS: &[&str] = &[
    "name",
    "description",
    "token",
    "digest",
    "permissions",
    "preset",
    "expires_at",
    "revoked_at",
];

/// A validated import body.
#[derive(Debug)]
pub struct ImportBatch {
    pub entries: Vec<ImportEntry>,
    /// Names of tokens left out because their expiry has passed.
    pub expired: Vec<String>,
}

/// Validates a whole import body; the message of a refusal names the field (`tokens[3].digest`).
pub fn parse(body: &Value, now: UnixSeconds) -> Result<ImportBatch, String> {
    let body = body
        .as_object()
        .ok_or("the body must be a JSON object: {\"tokens\": [...]}")?;
    refuse_unknown(body, &["tokens"], "")?;
    let list = body
        .get("tokens")
        .ok_or("tokens: is required")?
        .as_array()
        .ok_or("tokens: must be a list")?;
    if list.is_empty() {
        return Err("tokens: must not be empty".into());
    }
    if list.len() > MAX_IMPORT {
        return Err(format!("tokens: at most {MAX_IMPORT} in one import"));
    }
    let mut batch = ImportBatch {
        entries: Vec::with_capacity(list.len()),
        expired: Vec::new(),
    };
    for (i, item) in list.iter().enumerate() {
        match parse_entry(&format!("tokens[{i}]"), item, now)? {
            Parsed::Entry(entry) => batch.entries.push(entry),
            Parsed::Expired(name) => batch.expired.push(name),
        }
    }
    Ok(batch)
}

enum Parsed {
    Entry(ImportEntry),
    /// Valid, but past its expiry: reported as skipped, not refused.
    Expired(String),
}

fn parse_entry(at: &str, item: &Value, now: UnixSeconds) -> Result<Parsed, String> {
    let item = item
        .as_object()
        .ok_or_else(|| format!("{at}: must be an object"))?;
    refuse_unknown(item, ENTRY_FIELDS, at)?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match item.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{at}.{key}: must be a string")),
        }
    };
    let (digest, hint) = match (text("token")?, text("digest")?) {
        (Some(token), None) => {
            let secret = TokenSecret::parse(&token).map_err(|_| {
                format!("{at}.token: must be tc-apiv1_ followed by 64 lowercase hex characters")
            })?;
            (secret.digest(), secret.hint())
        }
        (None, Some(digest)) => {
            let digest = TokenDigest::from_hex(&digest.to_ascii_lowercase()).ok_or_else(|| {
                format!("{at}.digest: must be 64 hex characters, the SHA-256 of the whole token")
            })?;
            (digest, DIGEST_ONLY_HINT.to_owned())
        }
        _ => return Err(format!("{at}: give either \"token\" or \"digest\"")),
    };
    let permissions = match item.get("permissions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) => Some(
            list.iter()
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("{at}.permissions: must be a list of strings"))?,
        ),
        Some(_) => return Err(format!("{at}.permissions: must be a list of strings")),
    };
    let time = |key: &str| -> Result<Option<UnixSeconds>, String> {
        text(key)?
            .map(|t| {
                parse_rfc3339(&t)
                    .ok_or_else(|| format!("{at}.{key}: must be an RFC 3339 time in UTC"))
            })
            .transpose()
    };
    let expires_at = time("expires_at")?;
    // A token revoked in the system it comes from stays revoked here.
    let revoked_at = time("revoked_at")?;
    let name = text("name")?.ok_or_else(|| format!("{at}.name: is required"))?;
    let raw = RawSpec {
        name: name.clone(),
        description: text("description")?,
        preset: text("preset")?,
        permissions,
        // Checked above; an expired token is skipped below rather than refused.
        expires_at: None,
        expires_in: None,
    };
    let mut spec = TokenSpec::validate(raw, now).map_err(|e| {
        // These fields' messages quote the value; a secret pasted there must not come back.
        let message = match e.field {
            "preset" => "unknown preset (telegraf-agent)".to_owned(),
            "permissions" => "each must be resource:action with a known resource and action \
                              (read, write, delete or all)"
                .to_owned(),
            _ => e.message,
        };
        format!("{at}.{}: {message}", e.field)
    })?;
    if expires_at.is_some_and(|t| t <= now) {
        return Ok(Parsed::Expired(name));
    }
    spec.expires_at = expires_at;
    Ok(Parsed::Entry(ImportEntry {
        spec,
        digest,
        hint,
        revoked_at,
    }))
}

/// Refuses keys other than `allowed`. A key is quoted only when short: a secret pasted as a
/// key must not be echoed either.
fn refuse_unknown(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            let prefix = if at.is_empty() {
                String::new()
            } else {
                format!("{at}: ")
            };
            let shown = if key.len() <= 32 {
                format!(" {key:?}")
            } else {
                String::new()
            };
            Err(format!(
                "{prefix}unknown field{shown}; expected one of {}",
                allowed.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixSeconds = 1_800_000_000;

    #[test]
    fn plaintext_is_digested_and_digests_are_taken_in_any_case() {
        let secret = TokenSecret::generate();
        let other = TokenSecret::generate();
        let body = json!({"tokens": [
            {"name": "a", "token": secret.expose()},
            {"name": "b", "digest": other.digest().to_hex().to_uppercase(),
             "permissions": ["configs:read"]},
        ]});
        let entries = parse(&body, NOW).unwrap().entries;
        assert_eq!(entries[0].digest, secret.digest());
        assert_eq!(entries[0].hint, secret.hint());
        assert_eq!(
            entries[0].spec.permissions.to_strings(),
            ["configs:read", "heartbeat:write"]
        );
        assert_eq!(entries[1].digest, other.digest());
        assert_eq!(entries[1].hint, DIGEST_ONLY_HINT);
        assert_eq!(entries[1].spec.permissions.to_strings(), ["configs:read"]);
    }

    #[test]
    fn refusals_name_the_field_and_never_quote_a_secret() {
        let secret = TokenSecret::generate();
        let s = secret.expose();
        let bad_format = format!("{s}x");
        for (body, field) in [
            (json!({}), "tokens:"),
            (json!({"tokens": []}), "tokens:"),
            (json!({"tokens": [{"name": "a"}]}), "tokens[0]:"),
            (
                json!({"tokens": [{"name": "a", "token": s, "digest": "00"}]}),
                "tokens[0]:",
            ),
            (
                json!({"tokens": [{"name": "a", "token": bad_format}]}),
                "tokens[0].token:",
            ),
            (
                json!({"tokens": [{"name": "a", "digest": s}]}),
                "tokens[0].digest:",
            ),
            (json!({"tokens": [{"token": s}]}), "tokens[0].name:"),
            (
                json!({"tokens": [{"name": "a", "token": s, "permissions": ["x:y"]}]}),
                "tokens[0].permissions:",
            ),
            (
                json!({"tokens": [{"name": "a", "token": s, "expires_at": "soon"}]}),
                "tokens[0].expires_at:",
            ),
            (
                json!({"tokens": [{"name": "a", "token": 5}]}),
                "tokens[0].token:",
            ),
            (
                json!({"tokens": [{"name": "a", s: s}]}),
                "tokens[0]: unknown field",
            ),
            (
                json!({"tokens": [{"name": "a", "token": s, "preset": s}]}),
                "tokens[0].preset:",
            ),
            (
                json!({"tokens": [{"name": "a", "token": s, "permissions": [s]}]}),
                "tokens[0].permissions:",
            ),
            (
                json!({"tokens": [{"name": "a", "token": s, "expires_at": s}]}),
                "tokens[0].expires_at:",
            ),
            (
                json!({"tokens": [{"name": s, "digest": "0".repeat(64)}]}),
                "tokens[0].name:",
            ),
        ] {
            let message = parse(&body, NOW).unwrap_err();
            assert!(message.starts_with(field), "{field}: {message}");
            assert!(!message.contains(&s[9..]), "{message}");
        }
    }

    #[test]
    fn expired_tokens_are_skipped_and_revoked_ones_stay_revoked() {
        let (a, b) = (TokenSecret::generate(), TokenSecret::generate());
        let body = json!({"tokens": [
            {"name": "old", "token": a.expose(), "expires_at": "2001-01-01T00:00:00Z"},
            {"name": "gone", "token": b.expose(), "revoked_at": "2026-01-01T00:00:00Z"},
        ]});
        let batch = parse(&body, NOW).unwrap();
        assert_eq!(batch.expired, ["old"]);
        assert_eq!(batch.entries.len(), 1);
        assert_eq!(
            batch.entries[0].revoked_at,
            parse_rfc3339("2026-01-01T00:00:00Z")
        );
    }
}
