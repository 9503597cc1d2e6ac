//! Timestamps are stored as microseconds since the Unix epoch (portable across
//! both backends) and rendered as RFC 3339 UTC with an explicit `Z`.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Micros = i64;

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

pub fn rfc3339(micros: Micros) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert!(rfc3339(now_micros()).ends_with('Z'));
    }
}
