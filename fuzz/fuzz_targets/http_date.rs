//! HTTP-date parsing (RFC 9110 §5.6.7): IMF-fixdate, RFC 850 and asctime.
//!
//! The input is the text of a date field. Checked:
//! - no input panics;
//! - a date that reads, written back as IMF-fixdate and as asctime, reads
//!   as the same instant (years 0 to 9999);
//! - every date the `httpdate` crate reads in IMF-fixdate or asctime form
//!   (it is strict about case and the weekday) reads as the same instant
//!   here, for text that a field value carries (visible ASCII, SP, HTAB).

#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use outpost_cache::parse_http_date;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_http_date(text);
    // A leap second on the last day of 9999 reads as the next second,
    // which has no four-digit year to be written with.
    if let Some(time) = parsed
        && let civil = Civil::of(time)
        && civil.year <= 9999
    {
        let imf = civil.imf_fixdate();
        assert_eq!(
            parse_http_date(&imf),
            Some(time),
            "{text:?} written as {imf:?}"
        );
        let asctime = civil.asctime();
        assert_eq!(
            parse_http_date(&asctime),
            Some(time),
            "{text:?} written as {asctime:?}"
        );
    }
    // RFC 850's two-digit years are read against the current century here
    // and against a fixed one by httpdate: only the other two are compared,
    // and only for text a field value can carry as text (httpdate trims
    // any Unicode white space; no other byte reaches the parser).
    let field_text = text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    if field_text
        && !text.contains('-')
        && let Ok(theirs) = httpdate::parse_http_date(text)
    {
        assert_eq!(parsed, Some(theirs), "httpdate reads {text:?}");
    }
});

/// A time as the calendar names it (proleptic Gregorian, UTC).
struct Civil {
    year: i64,
    month: usize,
    day: i64,
    weekday: usize,
    seconds: i64,
}

impl Civil {
    fn of(time: SystemTime) -> Civil {
        let seconds = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_secs() as i64,
            Err(before) => -(before.duration().as_secs() as i64),
        };
        let days = seconds.div_euclid(86_400);
        // Days to a date by eras of 400 years, from 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month: (month - 1) as usize,
            day,
            weekday: days.rem_euclid(7) as usize,
            seconds: seconds.rem_euclid(86_400),
        }
    }

    fn clock(&self) -> String {
        format!(
            "{:02}:{:02}:{:02}",
            self.seconds / 3600,
            self.seconds / 60 % 60,
            self.seconds % 60
        )
    }

    fn imf_fixdate(&self) -> String {
        format!(
            "{}, {:02} {} {:04} {} GMT",
            DAYS[self.weekday],
            self.day,
            MONTHS[self.month],
            self.year,
            self.clock()
        )
    }

    fn asctime(&self) -> String {
        format!(
            "{} {} {:>2} {} {:04}",
            DAYS[self.weekday],
            MONTHS[self.month],
            self.day,
            self.clock(),
            self.year
        )
    }
}
