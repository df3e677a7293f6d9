//! What guards the web booking form's endpoint beyond its key: the rate limit per address
//! ([`IntakeLimit`]) and the form's idempotency key ([`idempotency_key`]). The booking
//! itself is made, once per key, by the store (`Store::intake`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use clinic_protocol::wire::{paths, MAX_IDEMPOTENCY_KEY};
use clinic_protocol::ErrorCode;

use crate::error::HttpError;

/// How long a web booking counts against its address.
const WINDOW: Duration = Duration::from_secs(60);

/// How many addresses the limit remembers at most. Quiet ones are forgotten first; while
/// this many have all booked within the minute (a flood), a new address is refused too.
const TRACKED: usize = 10_000;

/// Web bookings taken per address: at most `per_minute` in any minute from one address (an
/// IPv4 address, or an IPv6 /64, which one party usually holds whole); more are refused
/// until the oldest is a minute old. Requests with a wrong intake key are refused before
/// they count; every other request counts, whatever becomes of it.
///
/// A server driven without peer addresses (`app` served directly) counts everyone as one
/// address: then the limit is per intake key.
#[derive(Debug)]
pub(crate) struct IntakeLimit {
    per_minute: usize,
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl IntakeLimit {
    pub(crate) fn new(per_minute: u32) -> IntakeLimit {
        IntakeLimit {
            per_minute: usize::try_from(per_minute).unwrap_or(usize::MAX),
            recent: Mutex::default(),
        }
    }

    /// Counts a web booking from `from`; `false` if its address is over the limit.
    pub(crate) fn admit(&self, from: IpAddr) -> bool {
        self.admit_at(from, Instant::now())
    }

    fn admit_at(&self, from: IpAddr, now: Instant) -> bool {
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < WINDOW;
        // Every critical section leaves the map consistent, so a panic in one is harmless.
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let source = source(from);
        if !recent.contains_key(&source) && recent.len() >= TRACKED {
            recent.retain(|_, at| at.back().is_some_and(fresh));
            if recent.len() >= TRACKED {
                return false;
            }
        }
        let at = recent.entry(source).or_default();
        while at.front().is_some_and(|t| !fresh(t)) {
            at.pop_front();
        }
        if at.len() >= self.per_minute {
            return false;
        }
        at.push_back(now);
        true
    }
}

/// The address as the limit counts it: IPv4 as it is, IPv6 by its /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// The request's `Idempotency-Key`, if it has one: 1 to [`MAX_IDEMPOTENCY_KEY`] visible
/// ASCII characters, else `invalid_value`.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(value) = headers.get(paths::IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY
        || !bytes.iter().all(u8::is_ascii_graphic)
    {
        return Err(HttpError::new(
            ErrorCode::InvalidValue,
            format!(
                "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII \
                 characters (a UUID will do)."
            ),
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_gets_its_own_minute_of_bookings() {
        let limit = IntakeLimit::new(2);
        let start = Instant::now();
        let (a, b) = (ip("203.0.113.7"), ip("198.51.100.1"));
        assert!(limit.admit_at(a, start));
        assert!(limit.admit_at(a, start));
        assert!(!limit.admit_at(a, start), "the third within the minute");
        assert!(limit.admit_at(b, start), "another address is not held up");
        assert!(!limit.admit_at(a, start + Duration::from_secs(59)));
        assert!(
            limit.admit_at(a, start + WINDOW),
            "a minute after the first, one more"
        );
    }

    #[test]
    fn an_ipv6_64_counts_as_one_address_and_mapped_ipv4_as_ipv4() {
        let limit = IntakeLimit::new(1);
        let now = Instant::now();
        assert!(limit.admit_at(ip("2001:db8:1:2::1"), now));
        assert!(!limit.admit_at(ip("2001:db8:1:2:ffff::9"), now));
        assert!(limit.admit_at(ip("2001:db8:1:3::1"), now));
        assert!(limit.admit_at(ip("192.0.2.1"), now));
        assert!(!limit.admit_at(ip("::ffff:192.0.2.1"), now));
    }

    #[test]
    fn the_addresses_remembered_are_bounded() {
        let limit = IntakeLimit::new(1);
        let now = Instant::now();
        for n in 0..TRACKED as u32 {
            assert!(limit.admit_at(IpAddr::from(n.to_be_bytes()), now));
        }
        assert!(
            !limit.admit_at(ip("255.255.255.255"), now),
            "a flood of addresses"
        );
        assert!(limit.admit_at(ip("255.255.255.255"), now + WINDOW));
        assert_eq!(limit.recent.lock().unwrap().len(), 1, "the quiet ones went");
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        let key = |v: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                paths::IDEMPOTENCY_KEY_HEADER,
                axum::http::HeaderValue::from_bytes(v).unwrap(),
            );
            idempotency_key(&headers).map_err(|e| e.0)
        };
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            key(b"3f2c-form-17").unwrap().as_deref(),
            Some("3f2c-form-17")
        );
        for bad in [&b""[..], b"two words", "é".as_bytes(), &[b'k'; 256]] {
            assert_eq!(key(bad), Err(ErrorCode::InvalidValue), "{bad:?}");
        }
    }
}
