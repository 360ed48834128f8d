//! The `Date` field of answers that have none (RFC 9110 §6.6.1), as hyper
//! adds it on HTTP/1.1: formatted once a second per thread, not per answer.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

thread_local! {
    /// The second last formatted, and its value.
    static LAST: RefCell<(u64, HeaderValue)> = const { RefCell::new((0, HeaderValue::from_static(""))) };
}

/// The current time as an HTTP-date.
pub(crate) fn now() -> HeaderValue {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != second || last.1.is_empty() {
            let text = httpdate::fmt_http_date(now);
            if let Ok(value) = HeaderValue::from_str(&text) {
                *last = (second, value);
            }
        }
        last.1.clone()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_http_dates() {
        let value = super::now();
        let text = value.to_str().unwrap();
        assert!(httpdate::parse_http_date(text).is_ok(), "{text}");
    }
}
