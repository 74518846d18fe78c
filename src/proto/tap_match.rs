//! A public `TapRequest`'s target and filters, checked and turned into the
//! proxies' `ObserveRequest.Match`; and the evaluation of a `Match` against
//! one request, which is what a proxy's tap (the simulated one here) does.
//!
//! Every filter given must match (`all`): IPs become /32 (or /128)
//! netmasks, ports exact ranges, scheme and method the registered value
//! when there is one, authority an exact match and path a prefix.

use std::net::IpAddr;

use crate::proto::common::{HttpMethod, Scheme, http_method, scheme};
use crate::proto::net::{ip_from_proto, ip_to_proto};
use crate::proto::proxy::tap::observe_request::Match;
use crate::proto::proxy::tap::observe_request::r#match::{self as m, Http, Seq, Tcp, http, tcp};
use crate::proto::public::TapRequest;
use crate::proto::public::tap_request::Target as WireTarget;

/// The largest TCP port.
const MAX_PORT: u32 = 65_535;

/// The rate asked for when a request leaves `maxRps` unset (proto3's 0):
/// the original CLI's default.
pub const DEFAULT_MAX_RPS: f32 = 1.0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("a tap needs a target: a pod or a deployment")]
    NoTarget,
    #[error("invalid {kind} name {name:?}: expected NAMESPACE/NAME")]
    BadName { kind: &'static str, name: String },
    #[error("invalid {field} {value}: a port is 1-65535")]
    BadPort { field: &'static str, value: u32 },
    #[error("invalid {field} {value:?}: not an IPv4 or IPv6 address")]
    BadIp { field: &'static str, value: String },
    #[error("invalid maxRps {0}: a positive number of requests per second")]
    BadRate(String),
}

/// What a tap observes: one pod or every pod of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pod { namespace: String, name: String },
    Deployment { namespace: String, name: String },
}

impl Target {
    pub fn from_request(req: &TapRequest) -> Result<Self, FilterError> {
        let (kind, full) = match &req.target {
            Some(WireTarget::Pod(name)) => ("pod", name),
            Some(WireTarget::Deployment(name)) => ("deployment", name),
            None => return Err(FilterError::NoTarget),
        };
        let (namespace, name) = split_name(full).ok_or_else(|| FilterError::BadName {
            kind,
            name: full.clone(),
        })?;
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Ok(match kind {
            "pod" => Target::Pod { namespace, name },
            _ => Target::Deployment { namespace, name },
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
            Target::Deployment { namespace, name } => write!(f, "deployment {namespace}/{name}"),
        }
    }
}

/// `namespace/name`, both non-empty; a bare name is in `default`, as
/// kubectl has it.
fn split_name(full: &str) -> Option<(&str, &str)> {
    let (namespace, name) = full.split_once('/').unwrap_or(("default", full));
    let ok = |s: &str| !s.is_empty() && !s.contains('/') && !s.contains(char::is_whitespace);
    (ok(namespace) && ok(name)).then_some((namespace, name))
}

/// The requests per second asked for: unset is [`DEFAULT_MAX_RPS`].
pub fn max_rps(req: &TapRequest) -> Result<f32, FilterError> {
    match req.max_rps {
        0.0 => Ok(DEFAULT_MAX_RPS),
        rate if rate.is_finite() && rate > 0.0 => Ok(rate),
        rate => Err(FilterError::BadRate(rate.to_string())),
    }
}

/// The `Match` every filter of `req` builds, all of them required.
pub fn build_match(req: &TapRequest) -> Result<Match, FilterError> {
    let mut all = Vec::new();
    if let Some(tcp) = tcp_match("toIP", &req.to_ip, "toPort", req.to_port)? {
        all.extend(tcp.into_iter().map(|t| wrap(m::Match::Destination(t))));
    }
    if let Some(tcp) = tcp_match("fromIP", &req.from_ip, "fromPort", req.from_port)? {
        all.extend(tcp.into_iter().map(|t| wrap(m::Match::Source(t))));
    }
    if !req.scheme.is_empty() {
        all.push(http_match(http::Match::Scheme(parse_scheme(&req.scheme))));
    }
    if !req.method.is_empty() {
        all.push(http_match(http::Match::Method(parse_method(&req.method))));
    }
    if !req.authority.is_empty() {
        all.push(http_match(http::Match::Authority(string_match(
            http::string_match::Match::Exact(req.authority.clone()),
        ))));
    }
    if !req.path.is_empty() {
        all.push(http_match(http::Match::Path(string_match(
            http::string_match::Match::Prefix(req.path.clone()),
        ))));
    }
    Ok(wrap(m::Match::All(Seq { matches: all })))
}

fn wrap(inner: m::Match) -> Match {
    Match {
        r#match: Some(inner),
    }
}

fn http_match(inner: http::Match) -> Match {
    wrap(m::Match::Http(Http {
        r#match: Some(inner),
    }))
}

fn string_match(inner: http::string_match::Match) -> http::StringMatch {
    http::StringMatch {
        r#match: Some(inner),
    }
}

/// The netmask and port matches of one side; `None` when neither is set.
fn tcp_match(
    ip_field: &'static str,
    ip: &str,
    port_field: &'static str,
    port: u32,
) -> Result<Option<Vec<Tcp>>, FilterError> {
    let mut out = Vec::new();
    if !ip.is_empty() {
        let addr: IpAddr = ip.parse().map_err(|_| FilterError::BadIp {
            field: ip_field,
            value: ip.to_owned(),
        })?;
        let mask = if addr.is_ipv4() { 32 } else { 128 };
        out.push(Tcp {
            r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                ip: Some(ip_to_proto(addr)),
                mask,
            })),
        });
    }
    if port != 0 {
        if port > MAX_PORT {
            return Err(FilterError::BadPort {
                field: port_field,
                value: port,
            });
        }
        out.push(Tcp {
            r#match: Some(tcp::Match::Ports(tcp::PortRange {
                min: port,
                max: port,
            })),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

fn parse_scheme(text: &str) -> Scheme {
    let registered = match text.to_ascii_lowercase().as_str() {
        "http" => Some(scheme::Registered::Http),
        "https" => Some(scheme::Registered::Https),
        _ => None,
    };
    Scheme {
        r#type: Some(match registered {
            Some(r) => scheme::Type::Registered(r as i32),
            None => scheme::Type::Unregistered(text.to_owned()),
        }),
    }
}

fn parse_method(text: &str) -> HttpMethod {
    let registered = http_method::Registered::from_str_name(&text.to_ascii_uppercase());
    HttpMethod {
        r#type: Some(match registered {
            Some(r) => http_method::Type::Registered(r as i32),
            None => http_method::Type::Unregistered(text.to_owned()),
        }),
    }
}

/// The text of a method as a request line shows it.
pub fn method_name(method: Option<&HttpMethod>) -> String {
    match method.and_then(|m| m.r#type.as_ref()) {
        Some(http_method::Type::Registered(r)) => http_method::Registered::try_from(*r)
            .map_or_else(|_| format!("method({r})"), |r| r.as_str_name().to_owned()),
        Some(http_method::Type::Unregistered(text)) => text.clone(),
        None => String::new(),
    }
}

/// The text of a scheme, lower case as in a URL.
pub fn scheme_name(s: Option<&Scheme>) -> String {
    match s.and_then(|s| s.r#type.as_ref()) {
        Some(scheme::Type::Registered(r)) => scheme::Registered::try_from(*r).map_or_else(
            |_| format!("scheme({r})"),
            |r| r.as_str_name().to_lowercase(),
        ),
        Some(scheme::Type::Unregistered(text)) => text.clone(),
        None => String::new(),
    }
}

/// One request as a tap sees it, for [`matches`].
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub source: (IpAddr, u16),
    pub destination: (IpAddr, u16),
    pub scheme: &'a Scheme,
    pub method: &'a HttpMethod,
    pub authority: &'a str,
    pub path: &'a str,
}

/// Whether `request` matches `m`. A `Match` with nothing set matches
/// nothing (it names no condition a request could meet); `all` of nothing
/// matches everything, `any` of nothing nothing.
pub fn matches(m: &Match, request: &Observed<'_>) -> bool {
    match &m.r#match {
        None => false,
        Some(m::Match::All(seq)) => seq.matches.iter().all(|m| matches(m, request)),
        Some(m::Match::Any(seq)) => seq.matches.iter().any(|m| matches(m, request)),
        Some(m::Match::Not(inner)) => !matches(inner, request),
        Some(m::Match::Source(tcp)) => tcp_matches(tcp, request.source),
        Some(m::Match::Destination(tcp)) => tcp_matches(tcp, request.destination),
        Some(m::Match::Http(h)) => match &h.r#match {
            None => false,
            Some(http::Match::Scheme(s)) => same_scheme(s, request.scheme),
            Some(http::Match::Method(method)) => method == request.method,
            Some(http::Match::Authority(s)) => string_matches(s, request.authority),
            Some(http::Match::Path(s)) => string_matches(s, request.path),
        },
    }
}

fn same_scheme(a: &Scheme, b: &Scheme) -> bool {
    scheme_name(Some(a)).eq_ignore_ascii_case(&scheme_name(Some(b)))
}

fn string_matches(s: &http::StringMatch, value: &str) -> bool {
    match &s.r#match {
        Some(http::string_match::Match::Exact(exact)) => value.eq_ignore_ascii_case(exact),
        Some(http::string_match::Match::Prefix(prefix)) => value.starts_with(prefix.as_str()),
        None => false,
    }
}

fn tcp_matches(tcp: &Tcp, (ip, port): (IpAddr, u16)) -> bool {
    match &tcp.r#match {
        Some(tcp::Match::Netmask(net)) => net
            .ip
            .as_ref()
            .and_then(ip_from_proto)
            .is_some_and(|base| in_netmask(base, net.mask, ip)),
        Some(tcp::Match::Ports(range)) => {
            // A missing upper bound means the one port `min`.
            let max = if range.max == 0 { range.min } else { range.max };
            (range.min..=max).contains(&u32::from(port))
        }
        None => false,
    }
}

fn in_netmask(base: IpAddr, mask: u32, ip: IpAddr) -> bool {
    match (base, ip) {
        (IpAddr::V4(base), IpAddr::V4(ip)) => {
            let keep = u32::MAX.checked_shl(32 - mask.min(32)).unwrap_or(0);
            u32::from(base) & keep == u32::from(ip) & keep
        }
        (IpAddr::V6(base), IpAddr::V6(ip)) => {
            let keep = u128::MAX.checked_shl(128 - mask.min(128)).unwrap_or(0);
            u128::from(base) & keep == u128::from(ip) & keep
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> TapRequest {
        TapRequest {
            target: Some(WireTarget::Deployment("shop/web".into())),
            ..TapRequest::default()
        }
    }

    fn get() -> HttpMethod {
        parse_method("GET")
    }

    fn observed<'a>(scheme: &'a Scheme, method: &'a HttpMethod, path: &'a str) -> Observed<'a> {
        Observed {
            source: ("192.0.2.7".parse().unwrap(), 40_000),
            destination: ("192.0.2.10".parse().unwrap(), 8080),
            scheme,
            method,
            authority: "web.shop.svc.cluster.local:8080",
            path,
        }
    }

    #[test]
    fn targets_need_a_namespaced_name() {
        assert_eq!(
            Target::from_request(&req()),
            Ok(Target::Deployment {
                namespace: "shop".into(),
                name: "web".into()
            })
        );
        let bare = TapRequest {
            target: Some(WireTarget::Pod("web-1".into())),
            ..req()
        };
        assert_eq!(
            Target::from_request(&bare),
            Ok(Target::Pod {
                namespace: "default".into(),
                name: "web-1".into()
            })
        );
        for bad in ["shop/", "/web", "a/b/c", ""] {
            let r = TapRequest {
                target: Some(WireTarget::Pod(bad.into())),
                ..req()
            };
            assert!(
                matches!(Target::from_request(&r), Err(FilterError::BadName { .. })),
                "{bad:?}"
            );
        }
        let none = TapRequest {
            target: None,
            ..req()
        };
        assert_eq!(Target::from_request(&none), Err(FilterError::NoTarget));
    }

    #[test]
    fn bad_ports_ips_and_rates_are_refused() {
        let r = TapRequest {
            to_port: 70_000,
            ..req()
        };
        assert_eq!(
            build_match(&r),
            Err(FilterError::BadPort {
                field: "toPort",
                value: 70_000
            })
        );
        let r = TapRequest {
            from_ip: "1.2.3".into(),
            ..req()
        };
        assert!(matches!(
            build_match(&r),
            Err(FilterError::BadIp {
                field: "fromIP",
                ..
            })
        ));
        for rate in [-1.0, f32::NAN, f32::INFINITY] {
            let r = TapRequest {
                max_rps: rate,
                ..req()
            };
            assert!(max_rps(&r).is_err(), "{rate}");
        }
        assert_eq!(max_rps(&req()), Ok(DEFAULT_MAX_RPS));
    }

    #[test]
    fn no_filters_match_everything() {
        let m = build_match(&req()).unwrap();
        let (s, g) = (parse_scheme("http"), get());
        assert!(matches(&m, &observed(&s, &g, "/")));
    }

    #[test]
    fn every_filter_must_match() {
        let m = build_match(&TapRequest {
            to_ip: "192.0.2.10".into(),
            to_port: 8080,
            from_ip: "192.0.2.7".into(),
            scheme: "HTTP".into(),
            method: "get".into(),
            authority: "web.shop.svc.cluster.local:8080".into(),
            path: "/api/".into(),
            ..req()
        })
        .unwrap();
        let (http, https, g, post) = (
            parse_scheme("http"),
            parse_scheme("https"),
            get(),
            parse_method("POST"),
        );
        assert!(matches(&m, &observed(&http, &g, "/api/books")));
        assert!(!matches(&m, &observed(&http, &g, "/static/app.js")));
        assert!(!matches(&m, &observed(&https, &g, "/api/books")));
        assert!(!matches(&m, &observed(&http, &post, "/api/books")));
        let mut other = observed(&http, &g, "/api/books");
        other.destination.1 = 8081;
        assert!(!matches(&m, &other));
        let mut other = observed(&http, &g, "/api/books");
        other.source.0 = "192.0.2.8".parse().unwrap();
        assert!(!matches(&m, &other));
        let mut other = observed(&http, &g, "/api/books");
        other.authority = "web";
        assert!(!matches(&m, &other));
    }

    #[test]
    fn unregistered_methods_and_schemes_match_by_text() {
        let m = build_match(&TapRequest {
            method: "PROPFIND".into(),
            ..req()
        })
        .unwrap();
        let (s, propfind, g) = (parse_scheme("http"), parse_method("PROPFIND"), get());
        assert!(matches(&m, &observed(&s, &propfind, "/")));
        assert!(!matches(&m, &observed(&s, &g, "/")));
        assert_eq!(method_name(Some(&propfind)), "PROPFIND");
        assert_eq!(method_name(Some(&g)), "GET");
        assert_eq!(scheme_name(Some(&parse_scheme("HTTPS"))), "https");
    }

    #[test]
    fn combinators_and_masks() {
        let ten = ip_to_proto("10.1.0.0".parse().unwrap());
        let net = wrap(m::Match::Source(Tcp {
            r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                ip: Some(ten),
                mask: 16,
            })),
        }));
        let (s, g) = (parse_scheme("http"), get());
        let mut r = observed(&s, &g, "/");
        r.source.0 = "10.1.200.3".parse().unwrap();
        assert!(matches(&net, &r));
        assert!(!matches(&wrap(m::Match::Not(Box::new(net.clone()))), &r));
        r.source.0 = "10.2.0.1".parse().unwrap();
        assert!(!matches(&net, &r));
        assert!(!matches(&wrap(m::Match::Any(Seq::default())), &r));
        assert!(matches(&wrap(m::Match::All(Seq::default())), &r));
        assert!(!matches(&Match::default(), &r));
        let v6 = "2001:db8::1".parse().unwrap();
        assert!(in_netmask("2001:db8::".parse().unwrap(), 32, v6));
        assert!(!in_netmask("2001:db9::".parse().unwrap(), 32, v6));
        assert!(in_netmask(
            "0.0.0.0".parse().unwrap(),
            0,
            "8.8.8.8".parse().unwrap()
        ));
    }
}
