//! The stored form of a token record (schema 2): a compact binary layout.
//!
//! Every record is read at every start to fill the cache, so its size and decoding time are paid
//! per token per start: about 110 bytes plus the texts, decoded without parsing text. Schema 1
//! stored JSON; `legacy` reads it for the one-time migration.
//!
//! Layout, integers little-endian:
//!
//! ```text
//! u8 format (2) | u64 created_seq | [32] digest | [16] id | u64 permissions
//! i64 created_at | opt i64 expires_at | opt i64 revoked_at | opt i64 last_used_at
//! str16 name | str16 description | str8 hint | opt str16 revoke_reason
//! ```
//!
//! `opt` is a byte (0 absent, 1 present) before the value; `strN` a length of N bits before
//! UTF-8 bytes. Permissions are `PermissionSet`'s bits, whose layout only ever grows (new
//! resources are appended).
//!
//! From schema 3 on, a record's `revoked_at` and `revoke_reason` are always absent: a revocation
//! is a row of the `revocations` table, keyed by the token's id:
//!
//! ```text
//! u8 format (1) | i64 revoked_at | opt str16 revoke_reason
//! ```

use crate::time::UnixSeconds;
use crate::token::{PermissionSet, TokenDigest, TokenId, TokenRecord};

const FORMAT: u8 = 2;
const REVOCATION_FORMAT: u8 = 1;

/// What the cache needs of a record, borrowed from the stored bytes: decoding it allocates
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct TokenView<'a> {
    pub digest: TokenDigest,
    pub id: TokenId,
    pub name: &'a str,
    pub permissions: PermissionSet,
    pub expires_at: Option<UnixSeconds>,
    pub revoked: bool,
}

pub fn encode(r: &TokenRecord, created_seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        120 + r.name.len()
            + r.description.len()
            + r.hint.len()
            + r.revoke_reason.as_ref().map_or(0, String::len),
    );
    out.push(FORMAT);
    out.extend_from_slice(&created_seq.to_le_bytes());
    out.extend_from_slice(r.digest.as_bytes());
    out.extend_from_slice(r.id.as_str().as_bytes());
    out.extend_from_slice(&r.permissions.bits().to_le_bytes());
    out.extend_from_slice(&r.created_at.to_le_bytes());
    for t in [r.expires_at, r.revoked_at, r.last_used_at] {
        put_opt_i64(&mut out, t);
    }
    put_str16(&mut out, &r.name);
    put_str16(&mut out, &r.description);
    // Hints are short ("tc-apiv1_…" and four characters); a longer one is cut, never refused.
    let hint = truncate(&r.hint, u8::MAX as usize);
    out.push(hint.len() as u8);
    out.extend_from_slice(hint.as_bytes());
    put_opt_str16(&mut out, r.revoke_reason.as_deref());
    out
}

pub fn decode(bytes: &[u8]) -> Result<(TokenRecord, u64), String> {
    let mut r = Reader::new(bytes, FORMAT)?;
    let created_seq = r.u64()?;
    let (digest, id, permissions) = r.identity()?;
    let created_at = r.i64()?;
    let expires_at = r.opt_i64()?;
    let revoked_at = r.opt_i64()?;
    let last_used_at = r.opt_i64()?;
    let name = r.str16()?.to_owned();
    let description = r.str16()?.to_owned();
    let hint = r.str8()?.to_owned();
    let revoke_reason = r.opt_str16()?;
    r.end()?;
    let record = TokenRecord {
        id,
        name,
        description,
        digest,
        hint,
        permissions,
        created_at,
        expires_at,
        revoked_at,
        revoke_reason,
        last_used_at,
    };
    Ok((record, created_seq))
}

/// A row of the `revocations` table.
pub fn encode_revocation(revoked_at: UnixSeconds, reason: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + reason.map_or(0, str::len));
    out.push(REVOCATION_FORMAT);
    out.extend_from_slice(&revoked_at.to_le_bytes());
    put_opt_str16(&mut out, reason);
    out
}

/// When a token was revoked, and why if it was said.
pub fn decode_revocation(bytes: &[u8]) -> Result<(UnixSeconds, Option<String>), String> {
    let mut r = Reader::new(bytes, REVOCATION_FORMAT)?;
    let revoked_at = r.i64()?;
    let reason = r.opt_str16()?;
    r.end()?;
    Ok((revoked_at, reason))
}

/// The cache's part of a record, without copying a byte of it.
pub fn decode_view(bytes: &[u8]) -> Result<TokenView<'_>, String> {
    let mut r = Reader::new(bytes, FORMAT)?;
    let _created_seq = r.u64()?;
    let (digest, id, permissions) = r.identity()?;
    let _created_at = r.i64()?;
    let expires_at = r.opt_i64()?;
    let revoked = r.opt_i64()?.is_some();
    let _last_used_at = r.opt_i64()?;
    let name = r.str16()?;
    Ok(TokenView {
        digest,
        id,
        name,
        permissions,
        expires_at,
        revoked,
    })
}

fn put_opt_i64(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn put_opt_str16(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str16(out, s);
        }
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Names (128 characters), descriptions (1,024) and reasons (512) are bounded well below.
    let s = truncate(s, u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], format: u8) -> Result<Self, String> {
        match bytes.first() {
            Some(&found) if found == format => Ok(Reader { bytes, at: 1 }),
            Some(other) => Err(format!("record format {other}, expected {format}")),
            None => Err("empty record".into()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("record cut short")?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took exactly N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.i64()?)),
            other => Err(format!("bad option marker {other}")),
        }
    }

    fn str_of(&mut self, len: usize) -> Result<&'a str, String> {
        std::str::from_utf8(self.take(len)?).map_err(|_| "text is not UTF-8".to_owned())
    }

    fn str16(&mut self) -> Result<&'a str, String> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        self.str_of(len)
    }

    fn opt_str16(&mut self) -> Result<Option<String>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str16()?.to_owned())),
            other => Err(format!("bad option marker {other}")),
        }
    }

    fn str8(&mut self) -> Result<&'a str, String> {
        let len = self.u8()? as usize;
        self.str_of(len)
    }

    fn identity(&mut self) -> Result<(TokenDigest, TokenId, PermissionSet), String> {
        let digest = TokenDigest(self.array()?);
        let id = std::str::from_utf8(&self.array::<16>()?)
            .ok()
            .and_then(TokenId::parse)
            .ok_or("bad token id")?;
        let permissions = PermissionSet::from_bits(self.u64()?).ok_or("unknown permission bits")?;
        Ok((digest, id, permissions))
    }

    fn end(&self) -> Result<(), String> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err("trailing bytes after the record".into())
        }
    }
}

/// Schema 1's JSON records, read once to migrate a file to schema 2.
pub mod legacy {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct StoredRecord {
        id: String,
        created_seq: u64,
        name: String,
        description: String,
        digest: String,
        hint: String,
        permissions: Vec<String>,
        created_at: i64,
        expires_at: Option<i64>,
        revoked_at: Option<i64>,
        revoke_reason: Option<String>,
        last_used_at: Option<i64>,
    }

    pub fn decode(bytes: &[u8]) -> Result<(TokenRecord, u64), String> {
        let s: StoredRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let bad = |what: &str| format!("token {}: bad {what}", s.id);
        let record = TokenRecord {
            id: TokenId::parse(&s.id).ok_or_else(|| bad("id"))?,
            digest: TokenDigest::from_hex(&s.digest).ok_or_else(|| bad("digest"))?,
            permissions: PermissionSet::parse_all(&s.permissions)
                .map_err(|_| bad("permissions"))?,
            name: s.name,
            description: s.description,
            hint: s.hint,
            created_at: s.created_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            revoke_reason: s.revoke_reason,
            last_used_at: s.last_used_at,
        };
        Ok((record, s.created_seq))
    }

    #[cfg(test)]
    pub fn encode(r: &TokenRecord, created_seq: u64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": r.id.to_string(), "created_seq": created_seq, "name": r.name,
            "description": r.description, "digest": r.digest.to_hex(), "hint": r.hint,
            "permissions": r.permissions.to_strings(), "created_at": r.created_at,
            "expires_at": r.expires_at, "revoked_at": r.revoked_at,
            "revoke_reason": r.revoke_reason, "last_used_at": r.last_used_at,
        }))
        .expect("a record serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenSecret, TokenSpec};

    fn sample() -> TokenRecord {
        let secret = TokenSecret::generate();
        let mut r = TokenRecord::issue(
            TokenId::generate(),
            TokenSpec::agent("capteur-été"),
            &secret,
            1_800_000_000,
        );
        r.description = "in the east\nrack 4".into();
        r.expires_at = Some(1_900_000_000);
        r.revoked_at = Some(1_850_000_000);
        r.revoke_reason = Some("leaked".into());
        r.last_used_at = Some(1_840_000_000);
        r
    }

    #[test]
    fn records_round_trip_and_the_view_agrees() {
        let r = sample();
        let bytes = encode(&r, 42);
        assert_eq!(decode(&bytes), Ok((r.clone(), 42)));
        let view = decode_view(&bytes).unwrap();
        assert_eq!(
            (view.digest, view.id, view.name, view.permissions),
            (r.digest, r.id, r.name.as_str(), r.permissions)
        );
        assert_eq!(view.expires_at, r.expires_at);
        assert!(view.revoked);
        let plain = TokenRecord::issue(
            TokenId::generate(),
            TokenSpec::agent("a"),
            &TokenSecret::generate(),
            1,
        );
        assert_eq!(decode(&encode(&plain, 1)), Ok((plain, 1)));
    }

    #[test]
    fn damage_is_reported_not_misread() {
        let bytes = encode(&sample(), 1);
        for cut in [0, 1, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other_format = bytes;
        other_format[0] = 9;
        assert!(decode(&other_format).is_err());
    }

    #[test]
    fn revocations_round_trip_and_damage_is_reported() {
        for reason in [None, Some("leaked in a paste"), Some("")] {
            let bytes = encode_revocation(1_850_000_000, reason);
            assert_eq!(
                decode_revocation(&bytes),
                Ok((1_850_000_000, reason.map(str::to_owned)))
            );
            for cut in 0..bytes.len() {
                assert!(decode_revocation(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut longer = encode_revocation(1, None);
        longer.push(0);
        assert!(decode_revocation(&longer).is_err());
        // The reason's presence marker is 0 or 1, in a revocation as in a record.
        let mut marker = encode_revocation(1, None);
        *marker.last_mut().unwrap() = 2;
        assert!(decode_revocation(&marker).is_err());
        let mut unrevoked = sample();
        unrevoked.revoke_reason = None;
        let mut record = encode(&unrevoked, 1);
        *record.last_mut().unwrap() = 2;
        assert!(decode(&record).is_err());
        // A record is not a revocation, nor the other way round.
        assert!(decode_revocation(&encode(&sample(), 1)).is_err());
        assert!(decode(&encode_revocation(1, None)).is_err());
    }

    #[test]
    fn the_legacy_form_reads_the_same_record() {
        let r = sample();
        assert_eq!(legacy::decode(&legacy::encode(&r, 7)), Ok((r, 7)));
    }
}
