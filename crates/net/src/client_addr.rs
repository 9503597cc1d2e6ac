//! Who a request comes from: the peer address, or behind a trusted reverse
//! proxy, the right-most address in `X-Forwarded-For` that is not itself a
//! trusted proxy.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// The client address of a request, set by the network layer as a request
/// extension (`req.extensions().get::<ClientAddr>()`). Per-address
/// throttling and logging use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// The address limits and throttles count by: an IPv4 address, or the /64
/// network of an IPv6 address (one host commonly holds a whole /64).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(seg))
        }
        v4 => v4,
    }
}

/// `--trusted-proxies`: addresses and networks of reverse proxies whose
/// `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of IP addresses and CIDR networks.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "`{item}` is neither an IP address nor a CIDR network"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer`. Only a
    /// trusted peer's `X-Forwarded-For` is read, right to left: each proxy
    /// appends the address it received from, so the right-most address that
    /// is not a trusted proxy is the first one no trusted party vouches
    /// past. If every listed address is trusted (or the header is missing),
    /// the left-most trusted hop is the answer.
    pub fn client_addr(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage: nothing left of it can be believed.
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port or, for
/// IPv6, in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn forwarded_address_is_believed_only_from_trusted_proxies() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.1".parse().unwrap();
        let h = headers(&["203.0.113.9"]);
        // An untrusted peer's header is ignored.
        assert_eq!(
            trusted.client_addr(peer("198.51.100.7"), &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            trusted.client_addr(peer("10.1.2.3"), &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client_addr(peer("10.1.2.3"), &HeaderMap::new()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn right_most_untrusted_address_wins() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // A client-supplied spoof on the left is not believed.
        let h = headers(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(
            trusted.client_addr(peer("10.0.0.1"), &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // All trusted: the left-most hop.
        let h = headers(&["10.9.9.9, 10.0.0.5"]);
        assert_eq!(
            trusted.client_addr(peer("10.0.0.1"), &h),
            "10.9.9.9".parse::<IpAddr>().unwrap()
        );
        // Garbage stops the walk at the last believable hop.
        let h = headers(&["203.0.113.9, nonsense, 10.0.0.5"]);
        assert_eq!(
            trusted.client_addr(peer("10.0.0.1"), &h),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        // Ports and brackets.
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            trusted.client_addr(peer("10.0.0.1"), &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!("10.0.0.0/8,nope".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
    }

    #[test]
    fn ipv6_counts_by_64() {
        assert_eq!(
            limit_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            limit_key("::ffff:1.2.3.4".parse().unwrap()),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }
}
