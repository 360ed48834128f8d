//! HTTP-date parsing (RFC 9110 §5.6.7): all three formats a recipient must
//! accept (IMF-fixdate, the obsolete RFC 850 and asctime forms), strict
//! about their shape and robust about what carries no meaning: names in
//! any case, and a weekday that does not match the date.
//!
//! The `httpdate` crate still writes dates; its parser refuses a wrong
//! weekday and names in another case, which §5.6.7 asks recipients to
//! take ("encouraged to be robust in parsing timestamps").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// The time an HTTP-date names, or None when the text is not one.
pub fn parse_http_date(text: &str) -> Option<SystemTime> {
    parse_at(text, SystemTime::now())
}

/// As [`parse_http_date`], with `now` deciding the century of an RFC 850
/// two-digit year.
fn parse_at(text: &str, now: SystemTime) -> Option<SystemTime> {
    let text = text.trim_matches([' ', '\t']);
    let (day, rest) = text.split_once(' ')?;
    let parts = match day.strip_suffix(',') {
        Some(name) if is_one_of(name, &DAYS) => imf_fixdate(rest)?,
        Some(name) if is_one_of(name, &LONG_DAYS) => rfc850(rest, now)?,
        None if is_one_of(day, &DAYS) => asctime(rest)?,
        _ => return None,
    };
    parts.to_time()
}

/// `DD Mon YYYY HH:MM:SS GMT`
fn imf_fixdate(rest: &str) -> Option<Parts> {
    let mut fields = rest.split(' ');
    let day = two_digits(fields.next()?)?;
    let month = month(fields.next()?)?;
    let year = four_digits(fields.next()?)?;
    let (hour, minute, second) = time_of_day(fields.next()?)?;
    gmt(fields.next()?)?;
    fields.next().is_none().then_some(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `DD-Mon-YY HH:MM:SS GMT`; a year that would be more than 50 years
/// ahead is the latest past year with those digits (§5.6.7).
fn rfc850(rest: &str, now: SystemTime) -> Option<Parts> {
    let mut fields = rest.split(' ');
    let mut date = fields.next()?.split('-');
    let day = two_digits(date.next()?)?;
    let month = month(date.next()?)?;
    let short_year = two_digits(date.next()?)?;
    if date.next().is_some() {
        return None;
    }
    let (hour, minute, second) = time_of_day(fields.next()?)?;
    gmt(fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    let this_year = Parts::year_of(now);
    let mut year = this_year - this_year % 100 + i64::from(short_year);
    if year > this_year + 50 {
        year -= 100;
    }
    Some(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `Mon DD HH:MM:SS YYYY`, the day padded with a space (`Aug  8`).
fn asctime(rest: &str) -> Option<Parts> {
    let (month_name, rest) = rest.split_once(' ')?;
    let month = month(month_name)?;
    let (day, rest) = match rest.strip_prefix(' ') {
        Some(rest) => {
            let (digit, rest) = rest.split_at_checked(1)?;
            (u32::from(one_digit(digit)?), rest)
        }
        None => {
            let (digits, rest) = rest.split_at_checked(2)?;
            (two_digits(digits)?, rest)
        }
    };
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let (hour, minute, second) = time_of_day(fields.next()?)?;
    let year = four_digits(fields.next()?)?;
    fields.next().is_none().then_some(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

struct Parts {
    year: i64,
    /// 1 to 12.
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Parts {
    fn to_time(&self) -> Option<SystemTime> {
        if self.day == 0 || self.day > days_in_month(self.year, self.month) {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        // A leap second (60) reads as the next second.
        let seconds = days * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second);
        let magnitude = Duration::from_secs(seconds.unsigned_abs());
        if seconds >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    fn year_of(time: SystemTime) -> i64 {
        let days = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| (d.as_secs() / 86_400) as i64);
        civil_year(days)
    }
}

fn is_one_of(name: &str, names: &[&str]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

fn month(name: &str) -> Option<u32> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(name))?;
    u32::try_from(index + 1).ok()
}

fn gmt(zone: &str) -> Option<()> {
    zone.eq_ignore_ascii_case("gmt").then_some(())
}

fn one_digit(text: &str) -> Option<u8> {
    match text.as_bytes() {
        [d] if d.is_ascii_digit() => Some(d - b'0'),
        _ => None,
    }
}

fn two_digits(text: &str) -> Option<u32> {
    match text.as_bytes() {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

fn four_digits(text: &str) -> Option<i64> {
    (text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// `HH:MM:SS`, two digits each; the second may be 60 (a leap second).
fn time_of_day(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split(':');
    let hour = two_digits(parts.next()?)?;
    let minute = two_digits(parts.next()?)?;
    let second = two_digits(parts.next()?)?;
    (parts.next().is_none() && hour < 24 && minute < 60 && second <= 60)
        .then_some((hour, minute, second))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known
/// era-based conversion).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year of a day counted from 1970-01-01.
fn civil_year(days: i64) -> i64 {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let year = year_of_era + era * 400;
    if month_index >= 10 { year + 1 } else { year }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds from the epoch (negative before it), "now" in 2027.
    fn at(text: &str) -> Option<i64> {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        parse_at(text, now).map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs() as i64,
            Err(before) => -(before.duration().as_secs() as i64),
        })
    }

    /// RFC 9110 §5.6.7: the three formats name the same instant.
    #[test]
    fn the_three_formats_are_read() {
        let expected = Some(784_111_777);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), expected);
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(at("Tue, 19 Jan 2038 03:14:08 GMT"), Some(1 << 31));
        assert_eq!(
            at("Thu Aug 18 02:01:18 2050"),
            at("Thu, 18 Aug 2050 02:01:18 GMT")
        );
        assert_eq!(
            at("Sat, 29 Feb 2048 00:00:00 GMT"),
            at("Sat, 29 Feb 2048 00:00:00 gmt")
        );
    }

    /// Robust where nothing is lost: case, and a weekday that does not
    /// match the date (the date decides).
    #[test]
    fn case_and_weekday_do_not_matter() {
        let expected = at("Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(expected.is_some());
        for text in [
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "Mon, 18 Aug 2050 02:01:18 GMT",
            "thursday, 18-aug-50 02:01:18 GMT",
        ] {
            assert_eq!(at(text), expected, "{text}");
        }
        assert_eq!(
            at("Thu Aug  8 02:01:18 2050"),
            at("Mon, 08 Aug 2050 02:01:18 GMT")
        );
    }

    /// §5.6.7: a two-digit year more than 50 years ahead is in the past.
    #[test]
    fn two_digit_years_pick_their_century() {
        // "Now" is 2027: 77 is 2077, 78 is 1978.
        assert_eq!(
            at("Friday, 01-Jan-77 00:00:00 GMT"),
            at("Fri, 01 Jan 2077 00:00:00 GMT")
        );
        assert_eq!(
            at("Sunday, 01-Jan-78 00:00:00 GMT"),
            at("Sun, 01 Jan 1978 00:00:00 GMT")
        );
    }

    /// Hostile input never panics: every cut and every one-byte change of
    /// valid dates, over the characters that matter to the parser.
    #[test]
    fn no_input_panics() {
        let valid = [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ];
        let bytes = [b' ', b',', b'-', b':', b'0', b'9', b'a', b'\t', 0xc3, 0xa9];
        for date in valid {
            for cut in 0..=date.len() {
                let _ = at(date.get(..cut).unwrap_or_default());
                let _ = at(date.get(cut..).unwrap_or_default());
            }
            for at_byte in 0..date.len() {
                for b in bytes {
                    let mut changed = date.as_bytes().to_vec();
                    changed[at_byte] = b;
                    if let Ok(text) = String::from_utf8(changed) {
                        let _ = at(&text);
                    }
                }
            }
        }
        assert!(at("Sat, 31 Dec 9999 23:59:60 GMT").is_some());
        assert_eq!(at("Thu, 01 Jan 1570 00:00:00 GMT"), Some(-12_622_780_800));
    }

    #[test]
    fn malformed_dates_are_refused() {
        for text in [
            "",
            "0",
            "-1",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 8 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 24:00:00 GMT",
            "Thu, 31 Apr 2050 00:00:00 GMT",
            "Thu, 29 Feb 2100 00:00:00 GMT",
            "Thu, 18 Aug 2050 02:01:18 GMT extra",
            "Thursday, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18-Aug-50 02:01:18 GMT",
            "Thu Aug 8 02:01:18 2050",
            "Thu Aug 18 02:01:18 50",
            "Xyz, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Agu 2050 02:01:18 GMT",
            "Thu, ١٨ Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(at(text), None, "{text:?}");
        }
    }

    /// Property tests: any instant from year 0 to 9999, written in each
    /// format, and any text.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const LONG_WEEKDAYS: [&str; 7] = [
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
        ];
        const MONTH_NAMES: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        /// 0000-01-01 and 9999-12-31 23:59:59, in seconds from the epoch.
        const FIRST: i64 = -62_167_219_200;
        const LAST: i64 = 253_402_300_799;

        /// The calendar fields of `seconds` from the epoch: year, month
        /// (1 to 12), day, weekday (0 is Thursday) and time of day.
        fn civil(seconds: i64) -> (i64, u32, u32, usize, i64) {
            let days = seconds.div_euclid(86_400);
            // The inverse of `days_from_civil`, by search from the year.
            let year = civil_year(days);
            let (mut month, mut day) = (1, 1);
            while month < 12 && days_from_civil(year, month + 1, 1) <= days {
                month += 1;
            }
            day += (days - days_from_civil(year, month, 1)) as u32;
            (
                year,
                month,
                day,
                days.rem_euclid(7) as usize,
                seconds.rem_euclid(86_400),
            )
        }

        fn clock(time: i64) -> String {
            format!("{:02}:{:02}:{:02}", time / 3600, time / 60 % 60, time % 60)
        }

        proptest! {
            /// RFC 9110 §5.6.7: a date written as IMF-fixdate or asctime
            /// reads as the instant it names, in any case.
            #[test]
            fn written_dates_read_back(seconds in FIRST..=LAST, upper in any::<bool>()) {
                let (year, month, day, weekday, time) = civil(seconds);
                let imf = format!(
                    "{}, {day:02} {} {year:04} {} GMT",
                    WEEKDAYS[weekday], MONTH_NAMES[month as usize - 1], clock(time)
                );
                let asctime = format!(
                    "{} {} {day:>2} {} {year:04}",
                    WEEKDAYS[weekday], MONTH_NAMES[month as usize - 1], clock(time)
                );
                let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
                let at_seconds = |t: SystemTime| match t.duration_since(UNIX_EPOCH) {
                    Ok(after) => after.as_secs() as i64,
                    Err(before) => -(before.duration().as_secs() as i64),
                };
                for text in [imf, asctime] {
                    let text = if upper { text.to_ascii_uppercase() } else { text };
                    prop_assert_eq!(at(&text), Some(seconds), "{}", text);
                }
                // RFC 850 names the year within 50 years of now (2027).
                if (1978..=2077).contains(&year) {
                    let rfc850 = format!(
                        "{}, {day:02}-{}-{:02} {} GMT",
                        LONG_WEEKDAYS[weekday], MONTH_NAMES[month as usize - 1], year % 100, clock(time)
                    );
                    let read = parse_at(&rfc850, now).map(at_seconds);
                    prop_assert_eq!(read, Some(seconds), "{}", rfc850);
                }
            }

            /// Whatever `httpdate` reads (strictly), this reads the same.
            #[test]
            fn agrees_with_httpdate(seconds in 0i64..=LAST) {
                let time = UNIX_EPOCH + Duration::from_secs(seconds as u64);
                let text = httpdate::fmt_http_date(time);
                prop_assert_eq!(parse_http_date(&text), Some(time), "{}", text);
            }

            /// No text panics the parser.
            #[test]
            fn any_text_is_read_or_refused(text in "[ -~\t]{0,40}|[A-Za-z]{3}, [0-9 ]{2}.{0,30}") {
                let _ = at(&text);
            }
        }
    }
}
