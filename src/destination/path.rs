//! The `k8s` destination paths a proxy asks for (DESIGN §11 "Destination
//! paths"): `svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster-domain>`,
//! each with an optional trailing dot and an optional `:port`.

use std::fmt;

/// The only scheme served.
pub const K8S_SCHEME: &str = "k8s";

/// The port when the path names none.
pub const DEFAULT_PORT: u16 = 80;

/// The namespace when the path names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A service port a stream follows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("unsupported scheme {0:?}: only \"k8s\" is served")]
    Scheme(String),
    #[error("invalid destination {0:?}: more than one ':'")]
    TwoColons(String),
    #[error("invalid destination {0:?}: the port is not a number in 1..=65535")]
    Port(String),
    #[error(
        "invalid destination {0:?}: expected SERVICE[.NAMESPACE[.svc[.CLUSTER-DOMAIN]]][:PORT]"
    )]
    Name(String),
}

/// Parses a destination; `cluster_domain` is e.g. `cluster.local`.
pub fn parse(scheme: &str, path: &str, cluster_domain: &str) -> Result<Target, PathError> {
    if scheme != K8S_SCHEME {
        return Err(PathError::Scheme(scheme.to_owned()));
    }
    let (host, port) = match path.split_once(':') {
        None => (path, DEFAULT_PORT),
        Some((_, rest)) if rest.contains(':') => return Err(PathError::TwoColons(path.to_owned())),
        Some((host, digits)) => match digits.parse::<u16>() {
            Ok(port) if port != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => (host, port),
            _ => return Err(PathError::Port(path.to_owned())),
        },
    };
    let bad = || PathError::Name(path.to_owned());
    let host = host.strip_suffix('.').unwrap_or(host);
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(bad());
    }
    let domain = cluster_domain.trim_matches('.');
    let namespace = match labels.as_slice() {
        [_] => DEFAULT_NAMESPACE,
        [_, ns] | [_, ns, "svc"] => ns,
        [_, ns, "svc", rest @ ..] if rest.join(".") == domain => ns,
        _ => return Err(bad()),
    };
    Ok(Target {
        namespace: namespace.to_owned(),
        service: labels[0].to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> (String, String, u16) {
        let t = parse("k8s", path, "cluster.local").unwrap();
        (t.service, t.namespace, t.port)
    }

    fn t(svc: &str, ns: &str, port: u16) -> (String, String, u16) {
        (svc.to_owned(), ns.to_owned(), port)
    }

    #[test]
    fn every_accepted_form_and_the_defaults() {
        assert_eq!(ok("web"), t("web", "default", 80));
        assert_eq!(ok("web:8080"), t("web", "default", 8080));
        assert_eq!(ok("web.emojivoto"), t("web", "emojivoto", 80));
        assert_eq!(ok("web.emojivoto.svc:81"), t("web", "emojivoto", 81));
        assert_eq!(
            ok("web.emojivoto.svc.cluster.local:8080"),
            t("web", "emojivoto", 8080)
        );
        assert_eq!(
            ok("web.emojivoto.svc.cluster.local.:8080"),
            t("web", "emojivoto", 8080)
        );
        assert_eq!(ok("web."), t("web", "default", 80));
    }

    #[test]
    fn the_cluster_domain_is_the_flags() {
        let t = parse("k8s", "web.ns.svc.example.com", "example.com").unwrap();
        assert_eq!((t.service.as_str(), t.namespace.as_str()), ("web", "ns"));
        assert!(matches!(
            parse("k8s", "web.ns.svc.cluster.local", "example.com"),
            Err(PathError::Name(_))
        ));
    }

    #[test]
    fn malformed_destinations_are_rejected() {
        let p = |s, path| parse(s, path, "cluster.local");
        assert!(matches!(p("dns", "web"), Err(PathError::Scheme(_))));
        assert!(matches!(p("", "web"), Err(PathError::Scheme(_))));
        assert!(matches!(
            p("k8s", "web:80:80"),
            Err(PathError::TwoColons(_))
        ));
        assert!(matches!(p("k8s", "web:http"), Err(PathError::Port(_))));
        assert!(matches!(p("k8s", "web:"), Err(PathError::Port(_))));
        assert!(matches!(p("k8s", "web:+80"), Err(PathError::Port(_))));
        assert!(matches!(p("k8s", "web:0"), Err(PathError::Port(_))));
        assert!(matches!(p("k8s", "web:70000"), Err(PathError::Port(_))));
        assert!(matches!(p("k8s", ""), Err(PathError::Name(_))));
        assert!(matches!(p("k8s", "a..b"), Err(PathError::Name(_))));
        assert!(matches!(p("k8s", "a.b.pod"), Err(PathError::Name(_))));
    }
}
