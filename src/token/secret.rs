//! Token secrets (`tc-apiv1_` + 64 lowercase hex) and their SHA-256 digests.

use std::fmt;

use sha2::{Digest, Sha256};

/// Every token starts with this, as the Controller's own tokens do.
pub const TOKEN_PREFIX: &str = "tc-apiv1_";
const HEX_LEN: usize = 64;
/// The full length of a well-formed token.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + HEX_LEN;

/// A token secret. It exists only between generation (or import) and the reply that shows it once;
/// `Debug` never prints it and there is no `Display`; it has no `==` either, since secrets are
/// compared only through their digests.
#[derive(Clone)]
pub struct TokenSecret(String);

/// The token is not `tc-apiv1_` followed by 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid token format")]
pub struct FormatError;

impl TokenSecret {
    /// A new secret from 32 bytes of the operating system's random source.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = super::random_bytes();
        let mut s = String::with_capacity(TOKEN_LEN);
        s.push_str(TOKEN_PREFIX);
        push_hex(&mut s, &bytes);
        TokenSecret(s)
    }

    /// Accepts exactly the format the Controller issues.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        if is_well_formed(s.as_bytes()) {
            Ok(TokenSecret(s.to_owned()))
        } else {
            Err(FormatError)
        }
    }

    /// The secret itself, for the one reply that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// What may be shown of a token after its creation: the prefix and the last four characters.
    pub fn hint(&self) -> String {
        hint_of(self.0.as_bytes()).expect("a parsed secret is well formed")
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

fn is_well_formed(token: &[u8]) -> bool {
    token.len() == TOKEN_LEN
        && token.starts_with(TOKEN_PREFIX.as_bytes())
        && is_lower_hex(&token[TOKEN_PREFIX.len()..])
}

/// Whether every byte is `0-9` or `a-f`. No early exit and no table, so the loop compiles to a
/// few vector instructions for the 64 bytes of a token.
fn is_lower_hex(bytes: &[u8]) -> bool {
    let mut ok = true;
    for &b in bytes {
        ok &= (b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6);
    }
    ok
}

/// The hint of a presented token (prefix and last four characters), when it is well formed:
/// what logs may say about a token an agent sent, known or not.
pub fn hint_of(token: &[u8]) -> Option<String> {
    if !is_well_formed(token) {
        return None;
    }
    // Well formed means ASCII, so the slice is valid UTF-8.
    let last = std::str::from_utf8(&token[TOKEN_LEN - 4..]).ok()?;
    Some(format!("{TOKEN_PREFIX}…{last}"))
}

/// The hint of a token known only by its digest (imported without its plaintext).
pub const DIGEST_ONLY_HINT: &str = "tc-apiv1_…";

/// The hot path's parse: checks the format and digests the bytes in place, without allocating.
pub fn digest_token_bytes(token: &[u8]) -> Result<TokenDigest, FormatError> {
    if is_well_formed(token) {
        Ok(sha256_of_token(token))
    } else {
        Err(FormatError)
    }
}

/// SHA-256 of a well-formed token, whose length is fixed: the two blocks, padding and length
/// included, are laid out directly and compressed in one call, without the buffering of the
/// general-purpose hasher. Equal to `Sha256::digest(token)` (a unit test holds them together).
fn sha256_of_token(token: &[u8]) -> TokenDigest {
    const _: () = assert!(TOKEN_LEN > 64 && TOKEN_LEN < 64 + 56);
    let mut blocks = [[0u8; 64]; 2];
    blocks[0].copy_from_slice(&token[..64]);
    let tail = TOKEN_LEN - 64;
    blocks[1][..tail].copy_from_slice(&token[64..]);
    blocks[1][tail] = 0x80;
    blocks[1][56..].copy_from_slice(&((TOKEN_LEN as u64) * 8).to_be_bytes());
    let mut state = SHA256_INITIAL_STATE;
    sha2::block_api::compress256(&mut state, &blocks);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    TokenDigest(digest)
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_INITIAL_STATE: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 of a whole token string: what is stored, and what the cache is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenDigest(pub [u8; 32]);

/// A digest is already uniformly distributed, so its first eight bytes are a perfect hash: the
/// cache's hasher passes them through instead of hashing 32 bytes again. Clients cannot steer
/// this: inserting needs the admin credential, and a lookup key is a SHA-256 output.
impl std::hash::Hash for TokenDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl TokenDigest {
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        push_hex(&mut s, &self.0);
        s
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(TokenDigest(out))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({})", self.to_hex())
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_well_formed_and_distinct() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(TokenSecret::parse(a.expose()).is_ok());
        assert_eq!(a.expose().len(), TOKEN_LEN);
    }

    #[test]
    fn parse_rejects_everything_but_the_exact_format() {
        let good = format!("{TOKEN_PREFIX}{}", "ab".repeat(32));
        assert!(TokenSecret::parse(&good).is_ok());
        for bad in [
            String::new(),
            TOKEN_PREFIX.to_owned(),
            format!("{TOKEN_PREFIX}{}", "AB".repeat(32)),
            format!("{TOKEN_PREFIX}{}", "ab".repeat(31)),
            format!("{TOKEN_PREFIX}{}0", "ab".repeat(32)),
            format!("tc-apiv2_{}", "ab".repeat(32)),
            format!("{TOKEN_PREFIX}{}g", "ab".repeat(31) + "a"),
        ] {
            assert!(TokenSecret::parse(&bad).is_err(), "{bad:?}");
            assert!(digest_token_bytes(bad.as_bytes()).is_err());
        }
    }

    #[test]
    fn digest_is_sha256_of_the_whole_string() {
        let secret = TokenSecret::parse(&format!("{TOKEN_PREFIX}{}", "0".repeat(64))).unwrap();
        let expected: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        assert_eq!(secret.digest().0, expected);
        assert_eq!(
            digest_token_bytes(secret.expose().as_bytes()).unwrap(),
            secret.digest()
        );
        let hex = secret.digest().to_hex();
        assert_eq!(TokenDigest::from_hex(&hex), Some(secret.digest()));
        assert_eq!(
            TokenDigest::from_hex(&hex.to_uppercase()),
            Some(secret.digest())
        );
        assert_eq!(TokenDigest::from_hex(&hex[1..]), None);
    }

    #[test]
    fn the_fixed_length_digest_is_sha256() {
        for _ in 0..100 {
            let secret = TokenSecret::generate();
            let bytes = secret.expose().as_bytes();
            let expected: [u8; 32] = Sha256::digest(bytes).into();
            assert_eq!(digest_token_bytes(bytes).unwrap().0, expected);
            assert_eq!(secret.digest().0, expected);
        }
    }

    #[test]
    fn the_hex_check_takes_exactly_lower_hex() {
        for b in 0..=255u8 {
            let want = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            assert_eq!(is_lower_hex(&[b]), want, "{b}");
        }
    }

    #[test]
    fn debug_and_hint_never_show_the_secret() {
        let secret = TokenSecret::generate();
        let hex_part = &secret.expose()[TOKEN_PREFIX.len()..];
        assert!(!format!("{secret:?}").contains(hex_part));
        let hint = secret.hint();
        assert!(hint.starts_with("tc-apiv1_…"));
        assert!(hint.ends_with(&secret.expose()[TOKEN_LEN - 4..]));
        assert!(!hint.contains(&hex_part[..8]));
    }
}
