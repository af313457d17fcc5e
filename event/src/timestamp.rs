//! Points in time as nanoseconds since the Unix epoch, written as RFC 3339 UTC strings.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, nanoseconds since 1970-01-01T00:00:00Z. In JSON it is an RFC 3339 string in UTC
/// with nine fractional digits, e.g. `2009-11-18T08:00:21.123456000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error("invalid RFC 3339 timestamp {0:?}")]
    Invalid(String),
    #[error("timestamp {0:?} is outside the range this schema stores")]
    OutOfRange(String),
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Timestamp {
    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Timestamp {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC).saturating_add(i64::from(nanos)))
    }

    pub fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros.saturating_mul(1_000))
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid of a positive modulus is in 0..NANOS_PER_SEC, which fits u32.
        self.0.rem_euclid(NANOS_PER_SEC) as u32
    }

    /// Parse an RFC 3339 timestamp with any offset.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| TimestampError::Invalid(text.to_string()))?;
        let nanos = i64::try_from(parsed.unix_timestamp_nanos())
            .map_err(|_| TimestampError::OutOfRange(text.to_string()))?;
        Ok(Timestamp(nanos))
    }
}

impl Timestamp {
    /// The RFC 3339 text (`2009-11-18T08:00:21.123456000Z`) as fixed-size bytes. Every `i64` of
    /// nanoseconds falls in the years 1677-2262, so the year always has four digits.
    #[inline]
    pub fn rfc3339(self) -> [u8; 30] {
        let mut out = [0; 30];
        self.write_rfc3339(&mut out);
        out
    }

    /// [`Timestamp::rfc3339`] written into `out` in place: for a writer that puts it straight
    /// into its line, instead of copying it there from a returned array (a wide copy of bytes
    /// just stored one or two at a time has to wait for those stores).
    #[inline]
    pub fn write_rfc3339(self, out: &mut [u8; 30]) {
        let secs = self.secs();
        let days = secs.div_euclid(86_400);
        // In 0..86_400: fits u32.
        let second_of_day = secs.rem_euclid(86_400) as u32;
        *out = *b"0000-00-00T00:00:00.000000000Z";
        out[..10].copy_from_slice(&date_text(days));
        out[11..13].copy_from_slice(pair(second_of_day / 3600));
        out[14..16].copy_from_slice(pair(second_of_day / 60 % 60));
        out[17..19].copy_from_slice(pair(second_of_day % 60));
        let nanos = self.subsec_nanos();
        out[20] = b'0' + (nanos / 100_000_000) as u8;
        out[21..23].copy_from_slice(pair(nanos / 1_000_000 % 100));
        out[23..25].copy_from_slice(pair(nanos / 10_000 % 100));
        out[25..27].copy_from_slice(pair(nanos / 100 % 100));
        out[27..29].copy_from_slice(pair(nanos % 100));
    }
}

/// `YYYY-MM-DD` of a day number counted from 1970-01-01. Events come in bursts of one day, so the
/// last day's text is kept per thread.
#[inline]
fn date_text(days: i64) -> [u8; 10] {
    thread_local! {
        // No timestamp's day number is i64::MIN (they are within ±106,752 days of the epoch).
        static LAST: std::cell::Cell<(i64, [u8; 10])> =
            const { std::cell::Cell::new((i64::MIN, [0; 10])) };
    }
    LAST.with(|last| {
        let (day, text) = last.get();
        if day == days {
            return text;
        }
        let (year, month, day) = civil_from_days(days);
        let mut text = *b"0000-00-00";
        // The year is in 1677..=2262 (see `rfc3339`); the cast cannot wrap.
        let year = year.unsigned_abs() as u32;
        text[..2].copy_from_slice(pair(year / 100 % 100));
        text[2..4].copy_from_slice(pair(year % 100));
        text[5..7].copy_from_slice(pair(month));
        text[8..10].copy_from_slice(pair(day));
        last.set((days, text));
        text
    })
}

/// The two decimal digits of `n` (below 100).
#[inline]
fn pair(n: u32) -> &'static [u8] {
    let at = 2 * n as usize;
    &DIGIT_PAIRS[at..at + 2]
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.rfc3339();
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// Proleptic Gregorian date of a day number counted from 1970-01-01 (the well-known "days to civil"
/// conversion: shift the year to start in March so the leap day comes last, then split into 400-year
/// eras of 146097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        // 1258531221.123456 is a Zeek trace timestamp; date checked with `date -u -d @1258531221`.
        assert_eq!(
            Timestamp::from_micros(1_258_531_221_123_456).to_string(),
            "2009-11-18T08:00:21.123456000Z"
        );
        // Leap day and the end of a century year that is a leap year.
        assert_eq!(
            Timestamp::from_secs_nanos(951_782_400, 0).to_string(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn parses_offsets() {
        let utc = Timestamp::parse("2026-11-23T10:00:00Z").expect("valid");
        let hanoi = Timestamp::parse("2026-11-23T17:00:00+07:00").expect("valid");
        assert_eq!(utc, hanoi);
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn extreme_instants_keep_four_digit_years() {
        assert_eq!(Timestamp(i64::MIN).to_string(), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(Timestamp(i64::MAX).to_string(), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn formats_as_the_time_crate_across_days() {
        // Instants spread over the whole range and alternating between days (the per-thread
        // cache of the last day's text must follow), checked against the `time` crate.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut earlier = Vec::new();
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let nanos = if i % 3 == 0 { x as i64 } else { (x % 4_000_000_000_000_000_000) as i64 };
            earlier.push(nanos);
            let nanos = if i % 5 == 4 { earlier[i / 2] } else { nanos };
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                .expect("in range");
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond()
            );
            assert_eq!(Timestamp(nanos).to_string(), expected, "{nanos}");
        }
    }

    #[test]
    fn round_trips_through_text() {
        for nanos in [0, 1, 999_999_999, 1_700_000_000_123_456_789, -86_400_000_000_001] {
            let ts = Timestamp(nanos);
            assert_eq!(Timestamp::parse(&ts.to_string()), Ok(ts));
        }
    }
}
