//! Where adapters may connect: the tenant's allowed origins, and never loopback, link-local
//! (cloud metadata included) or private addresses unless the operator allows them for that
//! tenant. Names are checked after DNS resolution, so a public name that resolves to a private
//! address is refused too; redirects are not followed (an adapter that follows one makes a new,
//! re-checked request).

mod resolver;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::{network_contains, parse_network};
use resolver::ResolverPool;

/// Networks no adapter reaches unless its tenant has `allow_private_networks = true`.
const BLOCKED_NETWORKS: &[&str] = &[
    "0.0.0.0/8",      // "this" network
    "10.0.0.0/8",     // private
    "100.64.0.0/10",  // carrier-grade NAT
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, cloud metadata
    "172.16.0.0/12",  // private
    "192.0.0.0/24",   // IETF protocol assignments
    "192.168.0.0/16", // private
    "198.18.0.0/15",  // benchmarking
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, broadcast
    "::/128",         // unspecified
    "::1/128",        // loopback
    "::/96",          // IPv4-compatible (deprecated; embeds IPv4)
    "64:ff9b::/96",   // NAT64 (embeds IPv4; blocked whole rather than mapped)
    "64:ff9b:1::/48", // local-use NAT64 (embeds IPv4)
    "2001::/32",      // Teredo (tunnels to an embedded IPv4)
    "2002::/16",      // 6to4 (embeds IPv4)
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "fec0::/10",      // site-local (deprecated)
    "ff00::/8",       // multicast
];

/// Whether an adapter needs `allow_private_networks` to reach `ip`.
pub fn is_restricted(ip: IpAddr) -> bool {
    BLOCKED_NETWORKS
        .iter()
        .any(|n| network_contains(parse_network(n).expect("valid built-in network"), ip))
}

/// The resolver of one tenant's adapter requests: names resolved on the [`ResolverPool`] in the
/// tenant's share of it; with `public_only`, restricted addresses dropped, failing when nothing
/// else is left.
struct AdapterResolver {
    pool: Arc<ResolverPool>,
    tenant: String,
    public_only: bool,
}

impl Resolve for AdapterResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let pool = self.pool.clone();
        let tenant = self.tenant.clone();
        let public_only = self.public_only;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = pool.lookup(&tenant, &host).await?;
            if !public_only {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_restricted(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("`{host}` resolves only to loopback, link-local or private addresses").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The HTTP clients adapters' requests go through: one per tenant (and whether it may reach
/// private networks), so that each tenant's names are resolved in its own share of the resolver
/// and its connections are pooled apart from other tenants'.
pub struct EgressClients {
    pool: Arc<ResolverPool>,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
}

/// Idle connections a tenant's client keeps to one vendor host: a burst of requests leaves this
/// many open for the next, not one descriptor per request of the burst.
pub const IDLE_CONNECTIONS_PER_HOST: usize = 4;
/// An idle connection is closed after this long.
pub const IDLE_CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl EgressClients {
    /// The clients' shared resolver threads (never tokio's blocking pool, which the store uses).
    pub fn new() -> anyhow::Result<EgressClients> {
        Ok(EgressClients {
            pool: ResolverPool::start()?,
            clients: Mutex::default(),
        })
    }

    /// The client for `tenant`'s adapter requests, made on first use: no redirects followed, no
    /// proxy from the environment, restricted addresses refused after resolution unless
    /// `allow_private_networks`.
    pub fn for_tenant(&self, tenant: &str, allow_private_networks: bool) -> Result<reqwest::Client, String> {
        let mut clients = self.clients.lock().expect("egress clients lock");
        let key = (tenant.to_string(), allow_private_networks);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .dns_resolver(Arc::new(AdapterResolver {
                pool: self.pool.clone(),
                tenant: tenant.to_string(),
                public_only: !allow_private_networks,
            }))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Checks a URL's host when it is an address literal (those skip DNS resolution).
pub fn check_literal_host(url: &url::Url, allow_private_networks: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if !allow_private_networks && is_restricted(ip) {
        return Err(format!(
            "{ip} is a loopback, link-local or private address; the tenant does not allow private networks"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn resolver(public_only: bool) -> AdapterResolver {
        AdapterResolver {
            pool: ResolverPool::start().unwrap(),
            tenant: "acme".into(),
            public_only,
        }
    }

    #[test]
    fn restricted_addresses() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.1.1.1",
            "192.168.0.1",
            "172.20.0.1",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(is_restricted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_restricted(ip.parse().unwrap()), "{ip}");
        }
    }

    /// IPv6 ranges that embed or tunnel to IPv4, or are obsolete private ranges: each is blocked
    /// (addresses embedding a private and a public IPv4 alike), its neighbours are not.
    #[test]
    fn ipv6_transition_and_site_local_ranges_are_restricted() {
        for (range, inside) in [
            ("::/96 IPv4-compatible", &["::127.0.0.1", "::10.0.0.1", "::8.8.8.8"][..]),
            (
                "2002::/16 6to4",
                &["2002:7f00:1::1", "2002:a9fe:a9fe::", "2002:808:808::1"],
            ),
            ("2001::/32 Teredo", &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"]),
            (
                "64:ff9b::/96 NAT64",
                &["64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::8.8.8.8"],
            ),
            (
                "64:ff9b:1::/48 local NAT64",
                &["64:ff9b:1::7f00:1", "64:ff9b:1:ffff::1"],
            ),
            ("fec0::/10 site-local", &["fec0::1", "feff:ffff::1"]),
        ] {
            for ip in inside {
                assert!(is_restricted(ip.parse().unwrap()), "{range}: {ip}");
            }
        }
        for ip in ["2001:1::1", "2003::1", "64:ff9b:2::1", "1::8.8.8.8", "2606:4700::1111"] {
            assert!(!is_restricted(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts() {
        let url = url::Url::parse("http://169.254.169.254/latest/meta-data/").unwrap();
        assert!(check_literal_host(&url, false).is_err());
        assert!(check_literal_host(&url, true).is_ok());
        let url = url::Url::parse("http://[::ffff:7f00:1]:8080/").unwrap();
        assert!(check_literal_host(&url, false).is_err());
    }

    /// Name look-ups must not wait behind tokio's blocking pool, which the store's reads use:
    /// with every blocking thread busy, an adapter's request still resolves.
    #[test]
    fn resolution_does_not_use_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let resolver = resolver(false);
            let name: Name = "localhost".parse().unwrap();
            let result = tokio::time::timeout(Duration::from_secs(10), resolver.resolve(name)).await;
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            let resolved = result.expect("resolution waited for the blocking pool");
            assert!(resolved.expect("localhost resolves").all(|a| a.ip().is_loopback()));
        });
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let name: Name = "localhost".parse().unwrap();
        let result = resolver(true).resolve(name).await;
        assert!(result.is_err());
    }
}
