//! Per-address throttling of sign-in attempts (and of anonymous passkey ceremonies, which
//! cost a stored challenge each), in memory.
//!
//! Each source address may fail [`ATTEMPTS_PER_WINDOW_MAX`] sign-ins per
//! [`WINDOW_MS`]; beyond that it waits for the window to end. Accounts are protected
//! separately, in the store (a lock that survives restarts and spans instances); this
//! guards the server from one address guessing across many accounts (an IPv6 address
//! counts with the rest of its /64 network). The table holds at
//! most [`ADDRESSES_TRACKED_MAX`] addresses: when full, expired windows are dropped, and if
//! none has expired the table starts over (an attacker filling it gains a fresh window,
//! not a way around the account locks).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

pub const WINDOW_MS: i64 = 60_000;
pub const ATTEMPTS_PER_WINDOW_MAX: u32 = 20;
pub const ADDRESSES_TRACKED_MAX: usize = 100_000;

/// The unit an address is counted by: the address itself for IPv4, its /64 network for
/// IPv6, since one IPv6 host can use any of the 2^64 addresses of its network.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(network))
        }
    }
}

/// Anonymous passkey ceremonies one address may begin per window: each stores a challenge,
/// so beginning them must not be free.
pub const CEREMONIES_PER_WINDOW_MAX: u32 = 30;

#[derive(Debug)]
pub struct Throttle {
    windows: Mutex<HashMap<IpAddr, (i64, u32)>>,
    /// How many counted events an address may have per window.
    limit: u32,
}

impl Default for Throttle {
    /// Failed sign-ins: [`ATTEMPTS_PER_WINDOW_MAX`] per window.
    fn default() -> Self {
        Self::with_limit(ATTEMPTS_PER_WINDOW_MAX)
    }
}

impl Throttle {
    /// A throttle allowing `limit` counted events per address per window.
    pub fn with_limit(limit: u32) -> Self {
        Self {
            windows: Mutex::default(),
            limit,
        }
    }

    /// `Err(seconds to wait)` when `ip` has used up its failures for this window.
    pub fn check(&self, ip: IpAddr, now_ms: i64) -> Result<(), u64> {
        let ip = bucket(ip);
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        match windows.get(&ip) {
            Some(&(start, failures)) if now_ms - start < WINDOW_MS && failures >= self.limit => {
                let wait_ms = WINDOW_MS - (now_ms - start);
                Err(u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event against `ip`'s window: a failed sign-in, or a ceremony begun.
    pub fn record(&self, ip: IpAddr, now_ms: i64) {
        let ip = bucket(ip);
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= ADDRESSES_TRACKED_MAX && !windows.contains_key(&ip) {
            windows.retain(|_, (start, _)| now_ms - *start < WINDOW_MS);
            if windows.len() >= ADDRESSES_TRACKED_MAX {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert((now_ms, 0));
        if now_ms - entry.0 >= WINDOW_MS {
            *entry = (now_ms, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_too_many_failures_then_starts_afresh() {
        let throttle = Throttle::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let other: IpAddr = "203.0.113.6".parse().unwrap();
        for _ in 0..ATTEMPTS_PER_WINDOW_MAX {
            assert_eq!(throttle.check(ip, 1_000), Ok(()));
            throttle.record(ip, 1_000);
        }
        assert_eq!(throttle.check(ip, 1_000), Err(60));
        assert_eq!(throttle.check(ip, 30_500), Err(31));
        assert_eq!(throttle.check(other, 1_000), Ok(()));
        assert_eq!(throttle.check(ip, 61_000), Ok(()));
        throttle.record(ip, 61_000);
        assert_eq!(throttle.check(ip, 61_000), Ok(()));
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let throttle = Throttle::default();
        for n in 0..ATTEMPTS_PER_WINDOW_MAX {
            let ip: IpAddr = format!("2001:db8:1:2::{n:x}").parse().unwrap();
            throttle.record(ip, 1_000);
        }
        let sibling: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(throttle.check(sibling, 1_000).is_err());
        assert_eq!(throttle.check(elsewhere, 1_000), Ok(()));
    }
}
