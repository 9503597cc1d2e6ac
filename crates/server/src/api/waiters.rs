//! Long polls per read key and client address, capped below the address's
//! connection cap: one key's waiters (a leaking client, a fleet behind one
//! NAT address gone wrong) cannot take every connection slot of their
//! address, so the address's other requests still get through.

use crate::net::LongPollCap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The cap when the network layer did not say (a router served without
/// `crate::net::serve`): half the default per-address connection cap.
const DEFAULT_CAP: usize = 512;

type Slot = (String, Option<IpAddr>);

#[derive(Default)]
pub struct Waiters {
    held: Arc<Mutex<HashMap<Slot, usize>>>,
}

/// One long poll being answered; its slot is released on drop.
pub struct Waiting {
    held: Arc<Mutex<HashMap<Slot, usize>>>,
    slot: Slot,
}

impl Waiters {
    /// A slot for one long poll of `key_prefix` from `client`; `Err(cap)`
    /// when the pair holds `cap` already.
    pub fn enter(
        &self,
        key_prefix: &str,
        client: Option<IpAddr>,
        cap: Option<LongPollCap>,
    ) -> Result<Waiting, usize> {
        let cap = cap.map_or(DEFAULT_CAP, |c| c.0);
        let slot = (key_prefix.to_owned(), client.map(crate::net::limit_key));
        let mut held = self.held.lock();
        let n = held.entry(slot.clone()).or_insert(0);
        if *n >= cap {
            metrics::counter!("tessera_rate_limited_total", "limit" => "long_polls_per_key_address")
                .increment(1);
            return Err(cap);
        }
        *n += 1;
        metrics::gauge!("tessera_long_polls").increment(1.0);
        Ok(Waiting {
            held: self.held.clone(),
            slot,
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!("tessera_long_polls").decrement(1.0);
        let mut held = self.held.lock();
        if let Some(n) = held.get_mut(&self.slot) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.slot);
            }
        }
    }
}

/// Where a long poll comes from and the cap the network layer set for it.
pub struct LongPollOrigin {
    pub client: Option<IpAddr>,
    pub cap: Option<LongPollCap>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LongPollOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(LongPollOrigin {
            client: parts
                .extensions
                .get::<crate::net::ClientAddr>()
                .map(|c| c.0),
            cap: parts.extensions.get::<LongPollCap>().copied(),
        })
    }
}

/// The 429 of a key and address holding their cap of long polls.
pub fn too_many(cap: usize) -> super::error::ApiError {
    let mut e = super::error::ApiError::new(
        super::error::ErrorCode::RateLimited,
        format!(
            "this API key already holds {cap} long polls from this address (the most it may, so \
             that the address keeps connections for other requests); let one finish first"
        ),
    );
    e.retry_after = Some(1);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_address_hold_at_most_the_cap() {
        let w = Waiters::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let cap = Some(LongPollCap(2));
        let one = w.enter("k", Some(a), cap).unwrap();
        let _two = w.enter("k", Some(a), cap).unwrap();
        assert_eq!(w.enter("k", Some(a), cap).err(), Some(2));
        assert!(w.enter("other", Some(a), cap).is_ok());
        assert!(w.enter("k", Some("10.0.0.2".parse().unwrap()), cap).is_ok());
        drop(one);
        assert!(w.enter("k", Some(a), cap).is_ok());
    }
}
