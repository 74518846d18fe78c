//! The wire's `IPAddress` as `std::net::IpAddr` and back: IPv4 as a
//! big-endian u32, IPv6 as two big-endian u64 halves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::common::{IPv6, IpAddress, ip_address};

/// An `IPAddress` whose `ip` oneof is unset: no address at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an IPAddress with neither ipv4 nor ipv6 set")]
pub struct UnsetIp;

impl TryFrom<&IpAddress> for IpAddr {
    type Error = UnsetIp;

    fn try_from(ip: &IpAddress) -> Result<Self, UnsetIp> {
        match ip.ip.as_ref().ok_or(UnsetIp)? {
            ip_address::Ip::Ipv4(v4) => Ok(IpAddr::V4(Ipv4Addr::from(*v4))),
            ip_address::Ip::Ipv6(v6) => {
                let bits = (u128::from(v6.first) << 64) | u128::from(v6.last);
                Ok(IpAddr::V6(Ipv6Addr::from(bits)))
            }
        }
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V4(v4) => ip_address::Ip::Ipv4(u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                ip_address::Ip::Ipv6(IPv6 {
                    first: (bits >> 64) as u64,
                    last: bits as u64,
                })
            }
        };
        IpAddress { ip: Some(ip) }
    }
}

/// The wire address as a std address; `None` when the oneof is unset (for
/// `Option` chains: `addr.ip.as_ref().and_then(ip_from_proto)`).
pub fn ip_from_proto(ip: &IpAddress) -> Option<IpAddr> {
    IpAddr::try_from(ip).ok()
}

/// The std address as the wire's `IPAddress`.
pub fn ip_to_proto(ip: IpAddr) -> IpAddress {
    IpAddress::from(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_big_endian() {
        let ip = ip_to_proto("10.1.2.3".parse().unwrap());
        assert_eq!(ip.ip, Some(ip_address::Ip::Ipv4(0x0A01_0203)));
        assert_eq!(ip_from_proto(&ip), Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn ipv6_round_trips_through_hextet_halves() {
        let v6: IpAddr = "2001:db8::1:2".parse().unwrap();
        let ip = ip_to_proto(v6);
        assert_eq!(
            ip.ip,
            Some(ip_address::Ip::Ipv6(IPv6 {
                first: 0x2001_0db8_0000_0000,
                last: 0x0000_0000_0001_0002
            }))
        );
        assert_eq!(ip_from_proto(&ip), Some(v6));
        assert_eq!(ip_from_proto(&IpAddress { ip: None }), None);
    }

    #[test]
    fn an_unset_address_is_an_error() {
        assert_eq!(IpAddr::try_from(&IpAddress { ip: None }), Err(UnsetIp));
    }
}
