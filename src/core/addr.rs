//! The Go-style listen addresses (`:8087`) the original's flags use, and
//! the client-side spelling of an address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// A listen address as the original's flags spell it: `:8087` (every
/// interface), `127.0.0.1:8087`, `[::1]:8087` or `localhost:8087`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

#[derive(Debug, thiserror::Error)]
#[error("invalid address {0:?}: expected HOST:PORT or :PORT")]
pub struct InvalidAddr(String);

impl FromStr for ListenAddr {
    type Err = InvalidAddr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidAddr(s.to_string());
        if let Some(port) = s.strip_prefix(':') {
            let port = port.parse::<u16>().map_err(|_| err())?;
            return Ok(Self(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
        let port = port.parse::<u16>().map_err(|_| err())?;
        if host == "localhost" {
            return Ok(Self(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
        }
        Err(err())
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client-side address as the original's flags spell it: `:8087` means
/// this host, otherwise `HOST:PORT` with any resolvable host name. Returns a
/// URI for tonic/hyper clients.
pub fn client_uri(addr: &str) -> String {
    if let Some(port) = addr.strip_prefix(':') {
        return format!("http://127.0.0.1:{port}");
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return addr.to_string();
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addrs_in_the_originals_spelling() {
        assert_eq!(
            ":8087".parse::<ListenAddr>().unwrap().0,
            "0.0.0.0:8087".parse().unwrap()
        );
        assert_eq!(
            "127.0.0.1:9".parse::<ListenAddr>().unwrap().0,
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            "[::1]:9".parse::<ListenAddr>().unwrap().0,
            "[::1]:9".parse().unwrap()
        );
        assert!(":x".parse::<ListenAddr>().is_err());
        assert!("8087".parse::<ListenAddr>().is_err());
        assert_eq!(client_uri(":8087"), "http://127.0.0.1:8087");
        assert_eq!(client_uri("api:8085"), "http://api:8085");
    }
}
