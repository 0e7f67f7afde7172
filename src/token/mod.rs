//! The token model: secrets, digests, ids, permissions and the record's state machine.
//!
//! Pure code: no I/O beyond the operating system's random source for new secrets and ids.

mod id;
mod permission;
mod record;
mod secret;
mod spec;

pub use id::TokenId;
pub use permission::{
    Action, Permission, PermissionError, PermissionSet, Resource, TELEGRAF_AGENT,
};
pub use record::{
    NameError, TokenRecord, TokenStatus, contains_token_prefix, validate_description, validate_name,
};
pub use secret::{
    DIGEST_ONLY_HINT, FormatError, TOKEN_PREFIX, TokenDigest, TokenSecret, digest_token_bytes,
    hint_of,
};
pub use spec::{RawSpec, SpecError, TokenSpec};

/// Fills `buf` from the operating system's random source.
///
/// A machine that cannot give randomness cannot issue tokens safely; there is no fallback.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS random source only fails on a broken or unsupported system; issuing a guessable
    // secret instead would be worse than stopping.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf
}
