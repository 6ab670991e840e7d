//! Per-key IP allow-lists: CIDR networks and the client address a request comes from.
//!
//! This module is the address logic only (no storage, no authorize hook yet):
//!
//! - [`IpNet`]: one network, `10.0.0.0/8`, `2001:db8::/32`, or a bare address (`/32` or
//!   `/128`). A network with host bits set (`10.0.0.1/8`) is refused with a message naming
//!   the network it probably meant, because an allow-list that is wider or narrower than
//!   written is a security bug.
//! - [`IpAllowList`]: at most [`MAX_NETWORKS`] networks, IPv4 and IPv6 mixed; an address is
//!   allowed when any network contains it. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`,
//!   what a dual-stack socket reports for an IPv4 peer) are compared as IPv4.
//! - [`parse_peer`]: the peer address as the hosts give it (`192.0.2.1`, `::1`, `[::1]`,
//!   `fe80::1%eth0`).
//! - [`client_address`]: the address to check, from the peer and, only when the peer is a
//!   trusted proxy, `X-Forwarded-For`: the right-most entry that is not itself a trusted
//!   proxy. Entries to its left were written by the client and are never believed. A
//!   header that is oversized, has too many entries or an entry that is not an address
//!   gives `None` (no usable address: a key with an allow-list is then refused).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::{Error, Result};

/// The most networks one allow-list (or trusted-proxy list) may hold.
pub const MAX_NETWORKS: usize = 64;

/// The longest `X-Forwarded-For` value read, in bytes (the gates' header cap).
pub const MAX_FORWARDED_BYTES: usize = 4096;

/// The most `X-Forwarded-For` entries read.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// One network: an address and a prefix length, with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network `addr/prefix`; [`Error::InvalidArgument`] if the prefix is too long for
    /// the family or `addr` has host bits set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<IpNet> {
        let addr = canonical(addr);
        let max = max_prefix(addr);
        if prefix > max {
            return Err(Error::invalid(format!(
                "network prefix /{prefix} is longer than /{max}"
            )));
        }
        let masked = mask(addr, prefix);
        if masked != addr {
            return Err(Error::invalid(format!(
                "network {addr}/{prefix} has host bits set (did you mean {masked}/{prefix}?)"
            )));
        }
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = Error;

    /// `a.b.c.d/n`, `x:y::z/n`, or a bare address. Surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<IpNet> {
        let s = s.trim();
        if s.len() > 64 {
            return Err(Error::invalid("network is longer than 64 characters"));
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            Error::invalid(format!("{s:?} is not an IP network (a.b.c.d/n or x::y/n)"))
        })?;
        let mut prefix = match prefix {
            None => max_prefix(canonical(addr)),
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| Error::invalid(format!("{s:?}: bad prefix length")))?,
            Some(_) => return Err(Error::invalid(format!("{s:?}: bad prefix length"))),
        };
        // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is its IPv4 network (`/8`).
        if addr.is_ipv6() && canonical(addr).is_ipv4() && (96..=128).contains(&prefix) {
            prefix -= 96;
        }
        IpNet::new(addr, prefix)
    }
}

/// An allow-list: the networks a key may be used from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpAllowList {
    nets: Vec<IpNet>,
}

impl IpAllowList {
    /// Parses every network; refuses more than [`MAX_NETWORKS`] or any bad one (naming it).
    /// Duplicates are dropped and the list is sorted, so equal lists compare equal.
    pub fn parse<S: AsRef<str>>(networks: impl IntoIterator<Item = S>) -> Result<IpAllowList> {
        let mut nets = Vec::new();
        for n in networks {
            if nets.len() == MAX_NETWORKS {
                return Err(Error::invalid(format!(
                    "an allow-list holds at most {MAX_NETWORKS} networks"
                )));
            }
            nets.push(n.as_ref().parse::<IpNet>()?);
        }
        nets.sort_by_key(|n| (n.addr, n.prefix));
        nets.dedup();
        Ok(IpAllowList { nets })
    }

    /// The networks, sorted.
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether the list has no network.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether some network contains `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// A peer address as a host reports it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, an
/// IPv6 zone (`fe80::1%eth0`, dropped). `None` for anything else (never panics).
pub fn parse_peer(s: &str) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let s = s.split_once('%').map_or(s, |(a, _zone)| a);
    s.parse::<IpAddr>().ok().map(canonical)
}

/// The client address of a request (module docs): the peer, unless the peer is in
/// `trusted_proxies`, in which case the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy (or the left-most entry when every one is trusted). `None` when the
/// header is needed but absent, empty, oversized, has more than [`MAX_FORWARDED_HOPS`]
/// entries, or holds an entry that is not an address.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&[u8]>,
    trusted_proxies: &IpAllowList,
) -> Option<IpAddr> {
    let peer = canonical(peer);
    if !trusted_proxies.allows(peer) {
        return Some(peer);
    }
    let value = forwarded_for?;
    if value.len() > MAX_FORWARDED_BYTES {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let hops: Vec<&str> = value.split(',').collect();
    if hops.len() > MAX_FORWARDED_HOPS {
        return None;
    }
    let mut last = None;
    for hop in hops.iter().rev() {
        let ip = parse_peer(hop)?;
        if !trusted_proxies.allows(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// IPv4-mapped IPv6 as IPv4; everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with every bit after the first `prefix` cleared (`prefix` ≤ the family's length).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn list(nets: &[&str]) -> IpAllowList {
        IpAllowList::parse(nets).unwrap()
    }

    #[test]
    fn networks_contain_exactly_their_addresses() {
        let l = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::1",
            "2001:db8:ffff::",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(l.allows(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.0",
            "9.255.255.255",
            "192.0.2.8",
            "2001:db9::",
            "::2",
            "::ffff:11.0.0.1",
            "::a00:1",
        ] {
            assert!(!l.allows(ip(no)), "{no}");
        }
        assert!(list(&["0.0.0.0/0"]).allows(ip("203.0.113.9")));
        assert!(
            !list(&["0.0.0.0/0"]).allows(ip("2001:db8::1")),
            "an IPv4 network never holds IPv6"
        );
        assert!(list(&["::/0"]).allows(ip("2001:db8::1")));
        assert!(!IpAllowList::default().allows(ip("10.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused_with_a_message_that_helps() {
        let msg = |s: &str| s.parse::<IpNet>().unwrap_err().to_string();
        assert!(msg("10.0.0.1/8").contains("did you mean 10.0.0.0/8"));
        assert!(msg("10.0.0.0/33").contains("/32"));
        assert!(msg("::/129").contains("/128"));
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/0008",
            "host.example",
            "1.2.3.4:80",
            "[::1]/128",
            "🔑",
        ] {
            assert!(
                matches!(bad.parse::<IpNet>(), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert!(IpAllowList::parse(&many).is_err());
        assert_eq!(
            IpAllowList::parse(&many[..MAX_NETWORKS])
                .unwrap()
                .networks()
                .len(),
            MAX_NETWORKS
        );
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let a = list(&["192.0.2.0/24", "10.0.0.0/8", " 10.0.0.0/8 "]);
        let b = list(&["10.0.0.0/8", "192.0.2.0/24"]);
        assert_eq!(a, b);
        assert_eq!(
            a.networks()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.0.2.0/24"]
        );
        assert_eq!(
            list(&["::ffff:10.0.0.0/104"]).networks()[0].to_string(),
            "10.0.0.0/8"
        );
        assert!(list(&["::ffff:10.0.0.0/104"]).allows(ip("10.9.9.9")));
    }

    #[test]
    fn peers_are_read_in_every_form_the_hosts_give() {
        assert_eq!(parse_peer("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(parse_peer("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_peer("fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(parse_peer("::ffff:127.0.0.1"), Some(ip("127.0.0.1")));
        assert_eq!(parse_peer(" 192.0.2.1 "), Some(ip("192.0.2.1")));
        for bad in [
            "",
            "unknown",
            "192.0.2.1:8080",
            "[::1",
            "x".repeat(100).as_str(),
            "1.2.3.4.5",
        ] {
            assert_eq!(parse_peer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_right_to_left() {
        let proxies = list(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.5");
        let at = |xff: &str| client_address(peer, Some(xff.as_bytes()), &proxies);
        // The peer is not a proxy: the header is ignored, whatever it says.
        assert_eq!(
            client_address(ip("203.0.113.9"), Some(b"192.0.2.1"), &proxies),
            Some(ip("203.0.113.9"))
        );
        // Through one proxy.
        assert_eq!(at("198.51.100.4"), Some(ip("198.51.100.4")));
        // A client that writes its own header is seen at the hop the proxy appended.
        assert_eq!(at("192.0.2.1, 198.51.100.4"), Some(ip("198.51.100.4")));
        assert_eq!(
            at("127.0.0.1,10.0.0.1, 198.51.100.4"),
            Some(ip("198.51.100.4"))
        );
        // Through two trusted proxies: the right-most untrusted hop.
        assert_eq!(at("198.51.100.4, 10.0.0.9"), Some(ip("198.51.100.4")));
        // Every hop trusted: the left-most.
        assert_eq!(at("10.1.1.1, 10.0.0.9"), Some(ip("10.1.1.1")));
        // A trusted peer without a usable header: no address (fail closed).
        assert_eq!(client_address(peer, None, &proxies), None);
        for junk in ["", "unknown", "198.51.100.4, garbage", "198.51.100.4,"] {
            assert_eq!(at(junk), None, "{junk:?}");
        }
        // A spoofed junk entry left of the real hop does not matter, right of it does.
        assert_eq!(at("garbage, 198.51.100.4"), Some(ip("198.51.100.4")));
        assert_eq!(at(",198.51.100.4"), Some(ip("198.51.100.4")));
        assert_eq!(at("198.51.100.4, garbage, 10.0.0.2"), None);
        let many = vec!["10.0.0.1"; MAX_FORWARDED_HOPS + 1].join(",");
        assert_eq!(at(&many), None);
        let huge = format!("{}198.51.100.4", " ".repeat(MAX_FORWARDED_BYTES));
        assert_eq!(at(&huge), None);
        assert_eq!(client_address(peer, Some(b"\xff"), &proxies), None);
        // IPv6 proxies and clients, and a dual-stack peer.
        let v6 = list(&["2001:db8:1::/48", "10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.5"), Some(b"2001:db8:2::7"), &v6),
            Some(ip("2001:db8:2::7"))
        );
        assert_eq!(
            client_address(ip("2001:db8:1::1"), Some(b"[2001:db8:3::1]"), &v6),
            Some(ip("2001:db8:3::1"))
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}", b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = s.parse::<IpNet>();
            let _ = parse_peer(&s);
            let _ = client_address(ip("10.0.0.1"), Some(&b), &list(&["10.0.0.0/8"]));
        }
    }
}
