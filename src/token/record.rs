//! A token's record and its state machine: active → revoked (permanent); expired is derived from
//! the clock; deletion removes the record altogether (the store's business).

use super::{PermissionSet, TokenDigest, TokenId, TokenSecret, TokenSpec};
use crate::time::UnixSeconds;

/// Everything kept about a token. No secret: only its digest and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub description: String,
    pub digest: TokenDigest,
    /// The prefix and the last four characters of the secret, for recognising a token.
    pub hint: String,
    pub permissions: PermissionSet,
    pub created_at: UnixSeconds,
    pub expires_at: Option<UnixSeconds>,
    pub revoked_at: Option<UnixSeconds>,
    pub revoke_reason: Option<String>,
    pub last_used_at: Option<UnixSeconds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Revoked,
    Expired,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Revoked => "revoked",
            TokenStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(TokenStatus::Active),
            "revoked" => Some(TokenStatus::Revoked),
            "expired" => Some(TokenStatus::Expired),
            _ => None,
        }
    }
}

impl TokenRecord {
    /// A new, active record for the token `secret`, created at `created_at`. Only the secret's
    /// digest and hint are kept.
    pub fn issue(
        id: TokenId,
        spec: TokenSpec,
        secret: &TokenSecret,
        created_at: UnixSeconds,
    ) -> Self {
        TokenRecord::imported(id, spec, secret.digest(), secret.hint(), created_at)
    }

    /// A record for a token that exists elsewhere already (moved from the Controller), known
    /// by its digest and, when its plaintext was given, its hint.
    pub fn imported(
        id: TokenId,
        spec: TokenSpec,
        digest: TokenDigest,
        hint: String,
        created_at: UnixSeconds,
    ) -> Self {
        TokenRecord {
            id,
            name: spec.name,
            description: spec.description,
            digest,
            hint,
            permissions: spec.permissions,
            created_at,
            expires_at: spec.expires_at,
            revoked_at: None,
            revoke_reason: None,
            last_used_at: None,
        }
    }

    /// Revocation wins over expiry: a revoked token stays revoked in every listing.
    pub fn status(&self, now: UnixSeconds) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    /// Revokes the token unless it already is; returns whether anything changed. The first revoke
    /// time and reason are kept for good.
    pub fn revoke(&mut self, at: UnixSeconds, reason: Option<&str>) -> bool {
        if self.revoked_at.is_some() {
            return false;
        }
        self.revoked_at = Some(at);
        self.revoke_reason = reason.map(str::to_owned);
        true
    }
}

/// Why a name or description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
    #[error("must not begin or end with white space")]
    Padded,
    /// A secret pasted into the wrong field would otherwise be stored, listed, logged and sent
    /// upstream in `X-Tollgate-Token-Name`.
    #[error("must not contain a token (tc-apiv1_…)")]
    LooksLikeSecret,
}

/// Whether text carries something shaped like a token, anywhere in it.
pub fn contains_token_prefix(text: &str) -> bool {
    text.to_ascii_lowercase().contains(super::TOKEN_PREFIX)
}

const MAX_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 1024;

/// Names identify tokens to people and in the `X-Tollgate-Token-Name` header, so they stay on one
/// line and free of padding.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME {
        return Err(NameError::TooLong(MAX_NAME));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    if name.trim() != name {
        return Err(NameError::Padded);
    }
    if contains_token_prefix(name) {
        return Err(NameError::LooksLikeSecret);
    }
    Ok(())
}

pub fn validate_description(text: &str) -> Result<(), NameError> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(NameError::TooLong(MAX_DESCRIPTION));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(NameError::Control);
    }
    if contains_token_prefix(text) {
        return Err(NameError::LooksLikeSecret);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> TokenRecord {
        let secret = TokenSecret::generate();
        TokenRecord::issue(
            TokenId::generate(),
            TokenSpec::agent("agent"),
            &secret,
            1_000,
        )
    }

    #[test]
    fn names_and_descriptions_refuse_secrets() {
        let secret = TokenSecret::generate();
        let pasted = format!("agent {}", secret.expose().to_uppercase());
        assert_eq!(validate_name(&pasted), Err(NameError::LooksLikeSecret));
        assert_eq!(
            validate_description(&format!("for {}", secret.expose())),
            Err(NameError::LooksLikeSecret)
        );
        assert_eq!(validate_name("tc-apiv1 agent"), Ok(()));
    }

    #[test]
    fn revocation_is_permanent_and_keeps_the_first_time() {
        let mut r = record();
        assert_eq!(r.status(2_000), TokenStatus::Active);
        assert!(r.revoke(2_000, Some("leaked")));
        assert!(!r.revoke(3_000, Some("again")));
        assert_eq!(r.revoked_at, Some(2_000));
        assert_eq!(r.revoke_reason.as_deref(), Some("leaked"));
        assert_eq!(r.status(5_000), TokenStatus::Revoked);
    }

    #[test]
    fn expiry_is_derived_from_the_clock() {
        let mut r = record();
        r.expires_at = Some(1_500);
        assert_eq!(r.status(1_499), TokenStatus::Active);
        assert_eq!(r.status(1_500), TokenStatus::Expired);
        r.revoke(1_600, None);
        assert_eq!(r.status(1_700), TokenStatus::Revoked);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("agent-east-1").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(" x"), Err(NameError::Padded));
        assert_eq!(validate_name("a\nb"), Err(NameError::Control));
        assert_eq!(
            validate_name(&"x".repeat(129)),
            Err(NameError::TooLong(128))
        );
        assert!(validate_description("line one\nline two").is_ok());
        assert_eq!(validate_description("\u{7}"), Err(NameError::Control));
    }
}
