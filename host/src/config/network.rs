//! Addresses as the configuration writes them: origins (`scheme://host[:port]`), http(s) URLs,
//! URL paths and CIDR networks.

/// An allowed origin: lower-case scheme, host, and explicit port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses `scheme://host[:port]` (no path) into an [`Origin`].
pub fn parse_origin(text: &str) -> Result<Origin, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(format!("`{text}` must be scheme://host[:port] without a path"));
    }
    Origin::of(&url).ok_or_else(|| format!("`{text}` must be an http or https URL with a host"))
}

impl Origin {
    /// The origin of an absolute http(s) URL.
    pub fn of(url: &url::Url) -> Option<Origin> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

/// Parses a CIDR network such as `10.0.0.0/8` or `::1/128` (a bare address is one host).
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
    let address: std::net::IpAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an IP network such as 10.0.0.0/8"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = if prefix.is_empty() {
        max
    } else {
        prefix
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{text}` has a bad prefix length"))?
    };
    Ok((address, prefix))
}

/// Whether `ip` is inside `network` (as parsed by [`parse_network`]).
pub fn network_contains(network: (std::net::IpAddr, u8), ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (network.0, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - network.1 as u32).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - network.1 as u32).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

pub(super) fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    Origin::of(&url)
        .map(|_| ())
        .ok_or_else(|| format!("`{text}` must be an http or https URL"))
}

pub(super) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(format!("`{path}` must be an absolute path such as /a/b"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_match_addresses() {
        let net = parse_network("10.0.0.0/8").unwrap();
        assert!(network_contains(net, "10.1.2.3".parse().unwrap()));
        assert!(!network_contains(net, "11.0.0.1".parse().unwrap()));
        assert!(network_contains(net, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(network_contains(parse_network("::1").unwrap(), "::1".parse().unwrap()));
        assert!(parse_network("10.0.0.0/33").is_err());
    }

    #[test]
    fn origins_get_default_ports() {
        let origin = parse_origin("https://API.example.com").unwrap();
        assert_eq!(origin.host, "api.example.com");
        assert_eq!(origin.port, 443);
    }
}
