//! Addresses as operators write them: `host`, `host:port`, `ip`, `[v6]:port` (joins, checks, services).

use std::net::SocketAddr;

/// `host` without the brackets of an IPv6 literal (`[::1]` -> `::1`).
pub fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Resolves `addr`; an address without a port gets `default_port` (the gossip port).
pub async fn resolve(addr: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if addr
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr:?}: no addresses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ports_default_to_the_given_one() {
        assert_eq!(
            resolve("127.0.0.9", 8301).await.unwrap(),
            "127.0.0.9:8301".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.9:9000", 8301).await.unwrap(),
            "127.0.0.9:9000".parse().unwrap()
        );
        assert_eq!(
            resolve("localhost", 7000).await.unwrap().port(),
            7000,
            "names resolve with the default port"
        );
        assert!(resolve("no such host.invalid", 1).await.is_err());
    }
}
