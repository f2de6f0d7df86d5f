//! Which addresses a webhook may reach. A workspace with
//! `allow_private_networks = false` sends only to public addresses: the
//! check is made at send time, after DNS ([`PublicOnly`], the client's
//! resolver, so the address checked is the address connected to), and on
//! IP-literal URLs ([`check_literal`], which no resolver sees). Refused:
//! loopback, private (RFC 1918, `fc00::/7`), link-local, unspecified,
//! "this network" (`0.0.0.0/8`), shared (`100.64.0.0/10`), broadcast, and
//! those same addresses mapped or embedded into IPv6 (`::ffff:a.b.c.d`,
//! `::a.b.c.d`, `64:ff9b::a.b.c.d`).

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// A host that resolved only to addresses a webhook may not reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves only to private addresses ({}), and the workspace has allow_private_networks = false",
    list(.addresses)
)]
pub struct PrivateAddress {
    pub host: String,
    pub addresses: Vec<IpAddr>,
}

fn list(addresses: &[IpAddr]) -> String {
    let texts: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    texts.join(", ")
}

/// Whether `ip` is loopback, private, link-local or otherwise not public
/// (see the module's list).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6) || embedded_v4(v6).is_some_and(private_v4),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [first, second, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || first == 0
        || (first == 100 && (second & 0xc0) == 64)
}

fn private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// The IPv4 address inside a mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    ip.to_ipv4().or(nat64.then_some(low))
}

/// An IP-literal webhook URL pointing at an address it may not reach.
pub fn check_literal(url: &Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    match is_private(ip) {
        false => Ok(()),
        true => Err(format!(
            "webhook URL {url}: {ip} is a private address, and the workspace has allow_private_networks = false"
        )),
    }
}

/// The client's resolver for workspaces that keep webhooks off private
/// networks: resolves as the system does, keeps the public addresses, and
/// fails with [`PrivateAddress`] when none is left.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (private, public): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|a| is_private(a.ip()));
            if public.is_empty() && !private.is_empty() {
                let addresses = private.iter().map(SocketAddr::ip).collect();
                let refused: Box<dyn StdError + Send + Sync> =
                    Box::new(PrivateAddress { host, addresses });
                return Err(refused);
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The [`PrivateAddress`] refusal behind a failed request, if that is why
/// it failed.
pub fn refusal<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a PrivateAddress> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(refused) = error.downcast_ref::<PrivateAddress>() {
            return Some(refused);
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_unspecified_addresses_are_private() {
        for text in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            assert!(is_private(ip(text)), "{text}");
        }
        for text in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(!is_private(ip(text)), "{text}");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_and_names_are_left_to_the_resolver() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert!(check_literal(&url("http://127.0.0.1:9000/hook")).is_err());
        assert!(check_literal(&url("http://[::ffff:7f00:1]/hook")).is_err());
        assert!(
            check_literal(&url("http://0x7f.1/hook")).is_err(),
            "the URL parser normalises it"
        );
        let refused = check_literal(&url("https://10.0.0.2/x")).unwrap_err();
        assert!(
            refused.contains("allow_private_networks = false"),
            "{refused}"
        );
        assert!(check_literal(&url("https://8.8.8.8/")).is_ok());
        assert!(check_literal(&url("http://localhost:9000/")).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_only_private_addresses() {
        let name: Name = "localhost".parse().unwrap();
        let refused = match PublicOnly.resolve(name).await {
            Ok(_) => panic!("localhost resolved to a public address"),
            Err(e) => e,
        };
        let private = refusal(refused.as_ref()).expect("a PrivateAddress refusal");
        assert_eq!(private.host, "localhost");
        assert!(
            private.addresses.iter().all(|a| a.is_loopback()),
            "{private}"
        );
    }
}
