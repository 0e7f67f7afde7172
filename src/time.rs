//! Wall-clock time as whole Unix seconds, and its RFC 3339 text form (UTC, second precision).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. Times before 1970 never occur in tollgate's records.
pub type UnixSeconds = i64;

pub fn now() -> UnixSeconds {
    // A clock before 1970 is a broken machine; treating it as the epoch keeps every
    // comparison well defined.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch, for what needs finer time than records keep (process
/// heartbeats).
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The latest time RFC 3339 can write with a four-digit year: 9999-12-31T23:59:59Z. Every time
/// tollgate accepts is capped here, so every stored time can be shown.
pub const LATEST: UnixSeconds = 253_402_300_799;

/// `2026-11-27T21:00:00Z`. Times outside 1970..=9999 are clamped to those bounds.
pub fn format_rfc3339(t: UnixSeconds) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(t.clamp(0, LATEST) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Accepts RFC 3339 in UTC (`2027-01-31T00:00:00Z`, fractions dropped) or a bare date
/// (`2027-01-31`, midnight UTC).
pub fn parse_rfc3339(s: &str) -> Option<UnixSeconds> {
    let parsed = if s.len() == 10 {
        humantime::parse_rfc3339(&format!("{s}T00:00:00Z"))
    } else {
        humantime::parse_rfc3339(s)
    };
    let secs = parsed.ok()?.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A duration such as `30d`, `12h`, `90s` or `1h 30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        let t = parse_rfc3339("2027-01-31T00:00:00Z").unwrap();
        assert_eq!(format_rfc3339(t), "2027-01-31T00:00:00Z");
        assert_eq!(parse_rfc3339("2027-01-31"), Some(t));
        assert_eq!(parse_rfc3339("2027-01-31T00:00:00.5Z"), Some(t));
        assert_eq!(parse_rfc3339("tomorrow"), None);
        assert_eq!(parse_rfc3339("2027-13-01"), None);
        assert_eq!(format_rfc3339(LATEST), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(-5), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("soon"), None);
    }
}
