//! What an operator asks for when creating a token, validated field by field.

use super::{PermissionSet, validate_description, validate_name};
use crate::time::{LATEST, UnixSeconds, parse_duration, parse_rfc3339};

/// A validated request for a new token.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub name: String,
    pub description: String,
    pub permissions: PermissionSet,
    pub expires_at: Option<UnixSeconds>,
}

/// A refused field: the message names it, so a client knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

/// The raw fields of a create request, as the API and the command line give them.
#[derive(Debug, Clone, Default)]
pub struct RawSpec {
    pub name: String,
    pub description: Option<String>,
    pub preset: Option<String>,
    pub permissions: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub expires_in: Option<String>,
}

impl TokenSpec {
    /// An agent's token: the `telegraf-agent` preset, no description, no expiry.
    pub fn agent(name: &str) -> Self {
        TokenSpec {
            name: name.to_owned(),
            description: String::new(),
            permissions: PermissionSet::preset("telegraf-agent")
                .expect("the telegraf-agent preset exists"),
            expires_at: None,
        }
    }

    /// Validates a request at time `now`. With neither a preset nor permissions, the
    /// `telegraf-agent` preset applies.
    pub fn validate(raw: RawSpec, now: UnixSeconds) -> Result<TokenSpec, SpecError> {
        validate_name(&raw.name).map_err(|e| refuse("name", e.to_string()))?;
        let description = raw.description.unwrap_or_default();
        validate_description(&description).map_err(|e| refuse("description", e.to_string()))?;
        let permissions = match (raw.preset, raw.permissions) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "permissions",
                    "give either a preset or permissions, not both",
                ));
            }
            (Some(preset), None) => {
                PermissionSet::preset(&preset).map_err(|e| refuse("preset", e.to_string()))?
            }
            (None, Some(list)) => {
                let set = PermissionSet::parse_all(&list)
                    .map_err(|e| refuse("permissions", e.to_string()))?;
                if set.is_empty() {
                    return Err(refuse("permissions", "must name at least one permission"));
                }
                set
            }
            (None, None) => {
                PermissionSet::preset("telegraf-agent").expect("the telegraf-agent preset exists")
            }
        };
        let expires_at = match (raw.expires_at, raw.expires_in) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "expires_at",
                    "give either expires_at or expires_in, not both",
                ));
            }
            (Some(at), None) => {
                let at = parse_rfc3339(&at).ok_or_else(|| {
                    refuse(
                        "expires_at",
                        format!("{at:?} is not an RFC 3339 time in UTC"),
                    )
                })?;
                if at <= now {
                    return Err(refuse("expires_at", "must be in the future"));
                }
                Some(at)
            }
            (None, Some(text)) => {
                let d = parse_duration(&text).ok_or_else(|| {
                    refuse(
                        "expires_in",
                        format!("{text:?} is not a duration such as \"30d\""),
                    )
                })?;
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if secs == 0 {
                    return Err(refuse("expires_in", "must be at least one second"));
                }
                let at = now.saturating_add(secs);
                if at > LATEST {
                    return Err(refuse("expires_in", "reaches past the year 9999"));
                }
                Some(at)
            }
            (None, None) => None,
        };
        Ok(TokenSpec {
            name: raw.name,
            description,
            permissions,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str) -> RawSpec {
        RawSpec {
            name: name.into(),
            ..RawSpec::default()
        }
    }

    #[test]
    fn defaults_to_the_agent_preset_and_no_expiry() {
        let spec = TokenSpec::validate(raw("a"), 100).unwrap();
        assert_eq!(
            spec.permissions.to_strings(),
            ["configs:read", "heartbeat:write"]
        );
        assert_eq!(spec.expires_at, None);
    }

    #[test]
    fn expiry_forms() {
        let mut r = raw("a");
        r.expires_in = Some("30d".into());
        assert_eq!(
            TokenSpec::validate(r, 100).unwrap().expires_at,
            Some(100 + 30 * 86_400)
        );
        let mut r = raw("a");
        r.expires_at = Some("1970-01-01T00:00:50Z".into());
        assert_eq!(TokenSpec::validate(r, 100).unwrap_err().field, "expires_at");
        let mut r = raw("a");
        r.expires_at = Some("2030-01-01T00:00:00Z".into());
        r.expires_in = Some("1d".into());
        assert_eq!(TokenSpec::validate(r, 100).unwrap_err().field, "expires_at");
        let mut r = raw("a");
        r.expires_in = Some("10000years".into());
        assert_eq!(TokenSpec::validate(r, 100).unwrap_err().field, "expires_in");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(TokenSpec::validate(raw(""), 0).unwrap_err().field, "name");
        let mut r = raw("a");
        r.permissions = Some(vec!["cheese:read".into()]);
        let err = TokenSpec::validate(r, 0).unwrap_err();
        assert_eq!(err.to_string(), "permissions: unknown resource \"cheese\"");
        let mut r = raw("a");
        r.permissions = Some(vec![]);
        assert_eq!(TokenSpec::validate(r, 0).unwrap_err().field, "permissions");
        let mut r = raw("a");
        r.preset = Some("root".into());
        assert_eq!(TokenSpec::validate(r, 0).unwrap_err().field, "preset");
    }
}
