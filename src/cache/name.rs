//! A token's name as the cache keeps it: header-safe text, held inline when short (most agent
//! names are), so that a verdict can carry it without touching the heap.

use std::fmt;

/// Names up to this many bytes (after percent-encoding) live inline.
const INLINE: usize = 22;

/// Header-safe text: visible ASCII and spaces (see `header_safe_name`). 24 bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum Name {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Name {
    /// `text` must already be header-safe.
    pub fn new(text: &str) -> Name {
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Name::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(text.into())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole, so the first `len` bytes are valid UTF-8.
            Name::Inline { .. } => std::str::from_utf8(self.as_bytes()).expect("copied from a str"),
            Name::Heap(text) => text,
        }
    }

    /// The name's bytes, for writers that need no `str` (a header value on every request).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Name::Heap(text) => text.as_bytes(),
        }
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_inline_long_ones_on_the_heap() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        for text in [
            "",
            "agent-east-1",
            "exactly-twenty-two-by!",
            "a much longer name of an agent",
        ] {
            let name = Name::new(text);
            assert_eq!(name.as_str(), text);
            assert_eq!(name.as_bytes(), text.as_bytes());
            assert_eq!(matches!(name, Name::Inline { .. }), text.len() <= INLINE);
        }
    }
}
