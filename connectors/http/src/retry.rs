//! When to try a request again: which answers are retriable, exponential backoff, `Retry-After`.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` honoured; a server asking for more is asked again sooner.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What an HTTP status means for the records of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 2xx: the records are delivered.
    Accepted,
    /// 408, 429, 5xx: the server cannot take them now; try again.
    Retry,
    /// 401, 403, 407: the credentials are refused; every record would fail alike.
    Unauthorized,
    /// Any other status: the server refuses these records for good.
    Rejected,
}

pub(crate) fn answer(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Accepted,
        408 | 429 | 500..=599 => Answer::Retry,
        401 | 403 | 407 => Answer::Unauthorized,
        _ => Answer::Rejected,
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date (RFC 9110 10.2.3),
/// at most [`MAX_RETRY_AFTER`]; `None` when it is neither. A date in the past means now.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter: `initial`, doubling up to `max`, each wait shortened by a
/// random part of up to half so that lanes and tasks that failed together do not retry in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            next: initial.min(max),
            max,
        }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        let random = getrandom::u32().unwrap_or(u32::MAX / 2);
        wait.mul_f64(0.5 + 0.5 * f64::from(random) / f64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(answer(200), Answer::Accepted);
        assert_eq!(answer(204), Answer::Accepted);
        assert_eq!(answer(503), Answer::Retry);
        assert_eq!(answer(429), Answer::Retry);
        assert_eq!(answer(408), Answer::Retry);
        assert_eq!(answer(400), Answer::Rejected);
        assert_eq!(answer(404), Answer::Rejected);
        assert_eq!(answer(413), Answer::Rejected);
        assert_eq!(answer(302), Answer::Rejected);
        assert_eq!(answer(401), Answer::Unauthorized);
        assert_eq!(answer(403), Answer::Unauthorized);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date already past: retry now.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Capped.
        assert_eq!(retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        for ceiling in [100, 200, 350, 350, 350] {
            let wait = b.next_wait().as_millis();
            assert!(
                (ceiling / 2..=ceiling).contains(&wait),
                "{wait} ms outside {}..={ceiling}",
                ceiling / 2
            );
        }
    }
}
