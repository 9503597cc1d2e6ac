//! Caps on open connections, overall and per client address.
//!
//! A direct connection holds one slot overall and one for its address for
//! as long as it is open. A connection from a trusted proxy holds only the
//! overall slot (many clients share it); each request it carries holds a
//! slot for the forwarded client address while it is being handled, so one
//! client behind the proxy cannot take every slot either.

use super::client_addr::limit_key;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// Concurrent long polls one API key may hold from one client address
/// (handed to the handlers as a request extension): half the address's
/// connection cap, so the address's other requests always have room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPollCap(pub usize);

impl ConnLimits {
    pub fn long_poll_cap(&self) -> LongPollCap {
        LongPollCap((self.max_per_address / 2).max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection slot of the server is taken.
    Total,
    /// This client address holds all the slots it may.
    PerAddress,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_address",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Total => "the server has reached its connection limit; retry shortly",
            Refusal::PerAddress => {
                "too many open connections from this address; close some and retry"
            }
        }
    }
}

pub struct ConnLimiter {
    limits: ConnLimits,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// A held slot, released on drop.
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    counts_total: bool,
    address: Option<IpAddr>,
}

impl ConnLimiter {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Open connections right now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// A slot for a new connection from `peer`; `per_address` is false for a
    /// trusted proxy.
    pub fn connection(self: &Arc<Self>, peer: IpAddr, per_address: bool) -> Result<Slot, Refusal> {
        let taken = self.total.fetch_add(1, Ordering::AcqRel);
        if taken >= self.limits.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let address = if per_address {
            match self.take_address(peer) {
                Ok(key) => Some(key),
                Err(r) => {
                    self.total.fetch_sub(1, Ordering::AcqRel);
                    return Err(r);
                }
            }
        } else {
            None
        };
        metrics::gauge!("tessera_open_connections").increment(1.0);
        Ok(Slot {
            limiter: self.clone(),
            counts_total: true,
            address,
        })
    }

    /// A per-address slot for one request forwarded by a trusted proxy.
    pub fn forwarded_request(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let key = self.take_address(client)?;
        Ok(Slot {
            limiter: self.clone(),
            counts_total: false,
            address: Some(key),
        })
    }

    fn take_address(&self, ip: IpAddr) -> Result<IpAddr, Refusal> {
        let key = limit_key(ip);
        let mut map = self.per_address.lock();
        let n = map.entry(key).or_insert(0);
        if *n >= self.limits.max_per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        Ok(key)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.address {
            let mut map = self.limiter.per_address.lock();
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        if self.counts_total {
            self.limiter.total.fetch_sub(1, Ordering::AcqRel);
            metrics::gauge!("tessera_open_connections").decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_come_back() {
        let l = ConnLimiter::new(ConnLimits {
            max_connections: 3,
            max_per_address: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = l.connection(a, true).unwrap();
        let _s2 = l.connection(a, true).unwrap();
        assert_eq!(l.connection(a, true).err(), Some(Refusal::PerAddress));
        let _s3 = l.connection(b, true).unwrap();
        assert_eq!(l.connection(b, true).err(), Some(Refusal::Total));
        assert_eq!(l.open(), 3);
        drop(s1);
        assert_eq!(l.open(), 2);
        let _s4 = l.connection(a, true).unwrap();
        // Forwarded requests count per address only.
        assert_eq!(l.forwarded_request(a).err(), Some(Refusal::PerAddress));
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let r = l.forwarded_request(c).unwrap();
        assert_eq!(l.open(), 3);
        drop(r);
        assert!(l.per_address.lock().get(&c).is_none());
    }
}
