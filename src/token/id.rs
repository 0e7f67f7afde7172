//! Token ids: short, URL-safe, random, unrelated to the secret.

use std::fmt;

/// Lowercase Crockford base32: no `i`, `l`, `o` or `u`, so ids read back without confusion.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_LEN: usize = 16;
/// `IS_ID_BYTE[b]`: whether `b` is in `ALPHABET`. A start-up parses a million ids; a table
/// lookup per byte is several times faster than searching the alphabet.
const IS_ID_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// 16 characters of base32: 80 random bits, so ids never collide in practice (the store still
/// refuses a duplicate). Kept inline so that the cache holds no heap allocation for it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; ID_LEN]);

impl TokenId {
    pub fn generate() -> Self {
        let random: [u8; ID_LEN] = super::random_bytes();
        TokenId(random.map(|b| ALPHABET[usize::from(b & 31)]))
    }

    /// `parts - 1` ids (as key strings) that cut the id space into `parts` ranges of about
    /// equal size, in order: ids are uniformly random, so the ranges hold about as many each.
    pub fn range_bounds(parts: usize) -> Vec<String> {
        (1..parts.max(1))
            .map(|i| {
                let first = ALPHABET[i * ALPHABET.len() / parts];
                String::from(first as char)
            })
            .collect()
    }

    /// Accepts only what `generate` can produce.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; ID_LEN] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|&b| IS_ID_BYTE[usize::from(b)])
            .then_some(TokenId(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ALPHABET's ASCII bytes ever reach the array (generate and parse both ensure it).
        std::str::from_utf8(&self.0).expect("token ids are ASCII")
    }

    /// The id's ASCII bytes, for writers that need no `str` (a header value on every request).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = TokenId::generate();
        assert_eq!(TokenId::parse(a.as_str()), Some(a));
        assert_ne!(a, TokenId::generate());
        assert_eq!(a.as_str().len(), 16);
        assert_eq!(a.as_bytes(), a.as_str().as_bytes());
    }

    #[test]
    fn parse_accepts_exactly_the_alphabet() {
        for b in 0..=255u8 {
            let candidate = [if b.is_ascii() { b } else { b'0' }; ID_LEN];
            let Ok(text) = std::str::from_utf8(&candidate) else {
                continue;
            };
            assert_eq!(
                TokenId::parse(text).is_some(),
                !b.is_ascii() || ALPHABET.contains(&b),
                "byte {b:#04x}"
            );
        }
        // Beyond ASCII, as a string can carry it.
        assert_eq!(TokenId::parse("0123456789abcdé"), None);
    }

    #[test]
    fn parse_rejects_foreign_strings() {
        for bad in [
            "",
            "short",
            "0123456789abcdefg",
            "0123456789abcdeI",
            "../../etc/passwd0",
        ] {
            assert_eq!(TokenId::parse(bad), None, "{bad:?}");
        }
    }
}
