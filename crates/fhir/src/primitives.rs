//! FHIR R4 primitive types, each a newtype that can only hold a valid value.
//!
//! Each checks its lexical rule from the specification (§2.24 Data Types) while it is
//! deserialised, so a bad value is reported at its exact path by `serde_path_to_error`, and
//! each has a length bound (limits on everything). They serialise back to the very string
//! that was received: a date given to the month stays a date given to the month.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use time::{Date as CalendarDate, Month, PrimitiveDateTime, Time, UtcOffset};

use crate::limits;

/// Declares a string-backed primitive: `check` returns why a value is not valid.
macro_rules! string_primitive {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` against the type's rule.
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map_err(|why| format!("not a valid {}: {why}", $what))?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            // Values may be health data (a note, a name): never printed.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(…{} chars)"), self.0.chars().count())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(value).map_err(de::Error::custom)
            }
        }
    };
}

fn bounded(value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max {
        return Err(format!("{chars} characters, at most {max}"));
    }
    Ok(())
}

fn has_content(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("empty or only whitespace".into());
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err("contains a control character".into());
    }
    Ok(())
}

string_primitive!(
    /// A resource id: 1–64 of `A-Z a-z 0-9 - .`.
    Id,
    "id",
    |v| {
        if v.is_empty() || v.len() > limits::ID_CHARS_MAX {
            return Err(format!("1 to {} characters", limits::ID_CHARS_MAX));
        }
        if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err("only letters, digits, '-' and '.'".into());
        }
        Ok(())
    }
);

string_primitive!(
    /// A `string`: not empty, no control characters, bounded.
    FhirString,
    "string",
    |v| {
        has_content(v)?;
        bounded(v, limits::STRING_CHARS_MAX)
    }
);

string_primitive!(
    /// `markdown`: like a string but long enough for a clinical note.
    Markdown,
    "markdown",
    |v| {
        has_content(v)?;
        bounded(v, limits::MARKDOWN_CHARS_MAX)
    }
);

string_primitive!(
    /// A `code`: tokens separated by single spaces, no leading or trailing whitespace.
    Code,
    "code",
    |v| {
        bounded(v, limits::CODE_CHARS_MAX)?;
        if v.is_empty() || v.split(' ').any(|part| part.is_empty() || part.chars().any(char::is_whitespace)) {
            return Err("tokens separated by single spaces".into());
        }
        Ok(())
    }
);

string_primitive!(
    /// A `uri` (also `url`, `canonical`, `oid`, `uuid`): no whitespace, bounded.
    Uri,
    "uri",
    |v| {
        bounded(v, limits::URI_CHARS_MAX)?;
        if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("not empty and no whitespace".into());
        }
        Ok(())
    }
);

string_primitive!(
    /// `base64Binary`: standard alphabet with padding, bounded by `BASE64_CHARS_MAX`.
    Base64Binary,
    "base64Binary",
    |v| {
        bounded(v, limits::BASE64_CHARS_MAX)?;
        let body = v.trim_end_matches('=');
        if v.len() % 4 != 0
            || v.len() - body.len() > 2
            || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        {
            return Err("standard base64 with padding".into());
        }
        Ok(())
    }
);

/// A point or span in time as the half-open interval of milliseconds since the Unix epoch
/// that its precision covers (`2024-03` covers all of March), which is how FHIR compares
/// dates in search (§3.1.1.5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeRange {
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
}

impl TimeRange {
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start_ms < other.end_ms && other.start_ms < self.end_ms
    }

    /// The smallest range holding both.
    pub fn union(&self, other: &TimeRange) -> TimeRange {
        TimeRange {
            start_ms: self.start_ms.min(other.start_ms),
            end_ms: self.end_ms.max(other.end_ms),
        }
    }
}

/// How much of a date or time was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Year,
    Month,
    Day,
    /// A time of day with an offset, to the second or finer.
    Time {
        fraction_digits: u8,
    },
}

/// A parsed `date`, `dateTime` or `instant`, keeping the text it came from.
#[derive(Clone, PartialEq, Eq)]
struct Moment {
    text: String,
    range: TimeRange,
}

fn digits(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} must be digits"));
    }
    text.parse().map_err(|_| format!("{what} out of range"))
}

fn day_start_ms(date: CalendarDate) -> i64 {
    let seconds = date.midnight().assume_utc().unix_timestamp();
    seconds * 1000
}

fn parse_moment(text: &str, allow_partial: bool, allow_time: bool) -> Result<Moment, String> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year_text = fields.next().unwrap_or_default();
    if year_text.len() != 4 {
        return Err("the year has four digits".into());
    }
    let year = digits(year_text, "the year")?;
    if year == 0 {
        return Err("the year must be 0001 or later".into());
    }
    let month = fields.next().map(|m| {
        if m.len() != 2 {
            return Err("the month has two digits".to_owned());
        }
        digits(m, "the month")
    });
    let day = fields.next().map(|d| {
        if d.len() != 2 {
            return Err("the day has two digits".to_owned());
        }
        digits(d, "the day")
    });
    if fields.next().is_some() {
        return Err("expected YYYY, YYYY-MM or YYYY-MM-DD".into());
    }
    let year = i32::try_from(year).map_err(|_| "the year is out of range".to_owned())?;
    let month = month.transpose()?;
    let day = day.transpose()?;
    let month_value = match month {
        Some(m) => Some(
            u8::try_from(m)
                .ok()
                .and_then(|m| Month::try_from(m).ok())
                .ok_or("the month must be 01 to 12")?,
        ),
        None => None,
    };
    let precision = match (month_value, day, time_part) {
        (None, None, None) => Precision::Year,
        (Some(_), None, None) => Precision::Month,
        (Some(_), Some(_), None) => Precision::Day,
        (Some(_), Some(_), Some(_)) => Precision::Time { fraction_digits: 0 },
        _ => return Err("a time needs a full date".into()),
    };
    if !allow_partial && !matches!(precision, Precision::Time { .. }) {
        return Err("an instant needs a date, a time and a time zone".into());
    }
    if !allow_time && time_part.is_some() {
        return Err("a date has no time; use YYYY-MM-DD".into());
    }
    let first_day = CalendarDate::from_calendar_date(
        year,
        month_value.unwrap_or(Month::January),
        u8::try_from(day.unwrap_or(1)).map_err(|_| "the day is out of range".to_owned())?,
    )
    .map_err(|_| "no such day in that month".to_owned())?;
    let start_ms = day_start_ms(first_day);
    let range = match precision {
        Precision::Year => {
            let next = CalendarDate::from_calendar_date(year + 1, Month::January, 1)
                .map_err(|_| "the year is out of range".to_owned())?;
            TimeRange {
                start_ms,
                end_ms: day_start_ms(next),
            }
        }
        Precision::Month => {
            let month = month_value.unwrap_or(Month::January);
            let (next_year, next_month) = if month == Month::December {
                (year + 1, Month::January)
            } else {
                (year, month.next())
            };
            let next = CalendarDate::from_calendar_date(next_year, next_month, 1)
                .map_err(|_| "the year is out of range".to_owned())?;
            TimeRange {
                start_ms,
                end_ms: day_start_ms(next),
            }
        }
        Precision::Day => TimeRange {
            start_ms,
            end_ms: start_ms + 86_400_000,
        },
        Precision::Time { .. } => {
            let time = time_part.unwrap_or_default();
            parse_time_of_day(first_day, time)?
        }
    };
    Ok(Moment {
        text: text.to_owned(),
        range,
    })
}

/// `hh:mm:ss(.fff)?(Z|±hh:mm)` on `date`, as the range its precision covers.
fn parse_time_of_day(date: CalendarDate, text: &str) -> Result<TimeRange, String> {
    let zone_at = text
        .find(['Z', '+', '-'])
        .ok_or("a time needs a time zone (Z or ±hh:mm)")?;
    let (clock, zone) = text.split_at(zone_at);
    let mut parts = clock.split(':');
    let hour = parts.next().unwrap_or_default();
    let minute = parts.next().ok_or("the time is hh:mm:ss")?;
    let second_text = parts.next().ok_or("the time is hh:mm:ss")?;
    if parts.next().is_some() || hour.len() != 2 || minute.len() != 2 {
        return Err("the time is hh:mm:ss".into());
    }
    let (second, fraction) = match second_text.split_once('.') {
        Some((s, f)) => (s, Some(f)),
        None => (second_text, None),
    };
    if second.len() != 2 {
        return Err("the time is hh:mm:ss".into());
    }
    let hour = digits(hour, "the hour")?;
    let minute = digits(minute, "the minute")?;
    // A leap second (60) is valid FHIR; it is counted as the last instant of its minute.
    let second = digits(second, "the second")?.min(59);
    let (fraction_ms, step_ms) = match fraction {
        None => (0, 1000),
        Some(f) => {
            if f.is_empty() || f.len() > 9 {
                return Err("the fraction of a second has 1 to 9 digits".into());
            }
            // Checks that every digit is one; only milliseconds are kept.
            digits(f, "the fraction of a second")?;
            let padded = format!("{f:0<3}");
            let ms = digits(&padded[..3], "the fraction of a second")?;
            let step_ms = match f.len() {
                1 => 100,
                2 => 10,
                _ => 1,
            };
            (i64::from(ms), step_ms)
        }
    };
    let time = Time::from_hms(
        u8::try_from(hour).map_err(|_| "the hour is out of range".to_owned())?,
        u8::try_from(minute).map_err(|_| "the minute is out of range".to_owned())?,
        u8::try_from(second).map_err(|_| "the second is out of range".to_owned())?,
    )
    .map_err(|_| "the time of day is out of range".to_owned())?;
    let offset = if zone == "Z" {
        UtcOffset::UTC
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..]
            .split_once(':')
            .ok_or("the time zone is Z or ±hh:mm")?;
        if h.len() != 2 || m.len() != 2 {
            return Err("the time zone is Z or ±hh:mm".into());
        }
        let h = digits(h, "the time zone")?;
        let m = digits(m, "the time zone")?;
        if h > 14 || m > 59 || (h == 14 && m != 0) {
            return Err("the time zone is out of range".into());
        }
        let h = i8::try_from(h).map_err(|_| "the time zone is out of range".to_owned())? * sign;
        let m = i8::try_from(m).map_err(|_| "the time zone is out of range".to_owned())? * sign;
        UtcOffset::from_hms(h, m, 0).map_err(|_| "the time zone is out of range".to_owned())?
    };
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let start_ms = instant.unix_timestamp() * 1000 + fraction_ms;
    Ok(TimeRange {
        start_ms,
        end_ms: start_ms + step_ms,
    })
}

macro_rules! moment_primitive {
    ($(#[$doc:meta])* $name:ident, $what:literal, partial: $partial:expr, time: $time:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Moment);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, String> {
                parse_moment(text, $partial, $time)
                    .map(Self)
                    .map_err(|why| format!("not a valid {} ({why})", $what))
            }

            pub fn as_str(&self) -> &str {
                &self.0.text
            }

            /// The span its precision covers.
            pub fn range(&self) -> TimeRange {
                self.0.range
            }
        }

        impl fmt::Debug for $name {
            // A date can identify a patient (a birth date): never printed.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(…)"))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0.text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                if text.len() > 40 {
                    return Err(de::Error::custom(concat!("not a valid ", $what, " (too long)")));
                }
                Self::parse(&text).map_err(de::Error::custom)
            }
        }
    };
}

moment_primitive!(
    /// `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, no time.
    Date,
    "date",
    partial: true,
    time: false
);
moment_primitive!(
    /// `dateTime`: a `date`, or a full date and time with a time zone.
    DateTime,
    "dateTime",
    partial: true,
    time: true
);
moment_primitive!(
    /// `instant`: a full date and time with a time zone.
    Instant,
    "instant",
    partial: false,
    time: true
);

impl Instant {
    /// The instant `ms` after the epoch, written as FHIR does (`…T…Z`, milliseconds).
    pub fn from_unix_ms(ms: i64) -> Instant {
        let seconds = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        let at = time::OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            millis
        );
        Instant(Moment {
            text,
            range: TimeRange {
                start_ms: ms,
                end_ms: ms + 1,
            },
        })
    }
}

impl Date {
    /// The calendar day, when the date was given to the day.
    pub fn to_calendar_date(&self) -> Option<CalendarDate> {
        let text = self.as_str();
        if text.len() != 10 {
            return None;
        }
        let seconds = self.range().start_ms / 1000;
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .map(|at| at.date())
    }

    pub fn from_calendar_date(date: CalendarDate) -> Date {
        let text = format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        );
        let start_ms = day_start_ms(date);
        Date(Moment {
            text,
            range: TimeRange {
                start_ms,
                end_ms: start_ms + 86_400_000,
            },
        })
    }
}

/// `decimal`: a JSON number, kept as written where JSON allows (`72` stays `72`, `72.5`
/// stays `72.5`); read as an `f64` for comparison, about 15 significant digits, more than
/// any clinical measurement carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Decimal(serde_json::Number);

impl Decimal {
    pub fn to_f64(&self) -> f64 {
        self.0.as_f64().unwrap_or(f64::NAN)
    }

    pub fn from_f64(value: f64) -> Option<Decimal> {
        serde_json::Number::from_f64(value).map(Decimal)
    }
}

impl From<i64> for Decimal {
    fn from(value: i64) -> Decimal {
        Decimal(value.into())
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = serde_json::Number::deserialize(deserializer)?;
        match number.as_f64() {
            Some(v) if v.is_finite() => Ok(Decimal(number)),
            _ => Err(de::Error::custom("not a valid decimal")),
        }
    }
}

/// `positiveInt`: 1 to 2³¹−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PositiveInt(u32);

impl PositiveInt {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for PositiveInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        if value == 0 || value > i32::MAX as u32 {
            return Err(de::Error::custom("not a valid positiveInt (1 or more)"));
        }
        Ok(PositiveInt(value))
    }
}

/// `unsignedInt`: 0 to 2³¹−1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct UnsignedInt(u32);

impl UnsignedInt {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for UnsignedInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        if value > i32::MAX as u32 {
            return Err(de::Error::custom(
                "not a valid unsignedInt (at most 2147483647)",
            ));
        }
        Ok(UnsignedInt(value))
    }
}

/// A present array: FHIR forbids empty arrays (§2.6.2), and Haven bounds every one.
#[derive(Clone, PartialEq)]
pub struct List<T>(Vec<T>);

impl<T> List<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn first(&self) -> Option<&T> {
        self.0.first()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A list of one or more items, or `None` for none.
    pub fn from_vec(items: Vec<T>) -> Option<List<T>> {
        (!items.is_empty()).then_some(List(items))
    }
}

impl<T: fmt::Debug> fmt::Debug for List<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'a, T> IntoIterator for &'a List<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Serialize> Serialize for List<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bounded<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Bounded<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of 1 to {} items", limits::ARRAY_ITEMS_MAX)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if items.len() == limits::ARRAY_ITEMS_MAX {
                        return Err(de::Error::custom(format!(
                            "more than {} items",
                            limits::ARRAY_ITEMS_MAX
                        )));
                    }
                    items.push(item);
                }
                Ok(items)
            }
        }
        let items = deserializer.deserialize_seq(Bounded(std::marker::PhantomData))?;
        if items.is_empty() {
            return Err(de::Error::custom(
                "an empty array; leave the element out instead",
            ));
        }
        Ok(List(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_their_precision() {
        let year = Date::parse("2024").unwrap();
        let march = Date::parse("2024-03").unwrap();
        let day = Date::parse("2024-03-15").unwrap();
        assert!(year.range().start_ms < march.range().start_ms);
        assert_eq!(
            march.range().end_ms - march.range().start_ms,
            31 * 86_400_000
        );
        assert_eq!(day.range().end_ms - day.range().start_ms, 86_400_000);
        assert!(march.range().overlaps(&day.range()));
        assert_eq!(Date::parse("2024-02-29").unwrap().as_str(), "2024-02-29");
    }

    #[test]
    fn bad_dates_are_refused() {
        for bad in [
            "",
            "24",
            "2024-3",
            "2024-13",
            "2023-02-29",
            "2024-03-15T10:00:00Z",
            "2024/03/15",
            "0000",
            "2024-03-15-01",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad:?} accepted as a date");
        }
    }

    #[test]
    fn date_times_need_a_zone_and_keep_their_offset() {
        let utc = DateTime::parse("2024-03-15T10:00:00Z").unwrap();
        let plus = DateTime::parse("2024-03-15T12:00:00+02:00").unwrap();
        assert_eq!(utc.range(), plus.range());
        assert_eq!(plus.as_str(), "2024-03-15T12:00:00+02:00");
        let fine = DateTime::parse("2024-03-15T10:00:00.25Z").unwrap();
        assert_eq!(fine.range().start_ms - utc.range().start_ms, 250);
        assert_eq!(fine.range().end_ms - fine.range().start_ms, 10);
        for bad in [
            "2024-03-15T10:00:00",
            "2024-03-15T10:00Z",
            "2024-03-15T25:00:00Z",
            "2024-03-15T10:00:00+15:00",
            "2024-03T10:00:00Z",
            "2024-03-15T10:00:00.Z",
        ] {
            assert!(
                DateTime::parse(bad).is_err(),
                "{bad:?} accepted as a dateTime"
            );
        }
        assert!(Instant::parse("2024-03-15").is_err());
        assert_eq!(
            Instant::from_unix_ms(utc.range().start_ms + 5).as_str(),
            "2024-03-15T10:00:00.005Z"
        );
    }

    #[test]
    fn strings_codes_and_ids_follow_their_rules() {
        assert!(FhirString::parse("  ").is_err());
        assert!(FhirString::parse("a\u{0}b").is_err());
        assert!(Code::parse("final").is_ok());
        assert!(Code::parse(" final").is_err());
        assert!(Code::parse("a  b").is_err());
        assert!(Id::parse("abc-123.x").is_ok());
        assert!(Id::parse("abc/123").is_err());
        assert!(Id::parse("a".repeat(65)).is_err());
        assert!(Uri::parse("http://loinc.org").is_ok());
        assert!(Uri::parse("http://lo inc.org").is_err());
        assert!(Base64Binary::parse("aGk=").is_ok());
        assert!(Base64Binary::parse("aGk").is_err());
    }

    #[test]
    fn debug_never_prints_values() {
        let name = FhirString::parse("Marker Smith").unwrap();
        assert!(!format!("{name:?}").contains("Marker"));
        let date = Date::parse("1970-01-01").unwrap();
        assert!(!format!("{date:?}").contains("1970"));
    }
}
