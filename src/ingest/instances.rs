//! The instance cache: which pods have reported, and when last.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use parking_lot::Mutex;

/// How long a pod counts as reporting after its last report (the original's
/// ten minutes).
pub const INSTANCE_TTL: Duration = Duration::from_secs(600);

/// Most pods remembered at once: far above any cluster this serves, and a
/// bound on what proxies inventing pod names can make it hold.
pub const MAX_INSTANCES: usize = 200_000;

/// Longest namespace recorded: a namespace is a DNS label, at most 63
/// bytes in Kubernetes. A report naming a longer one names no pod.
pub const MAX_NAMESPACE_BYTES: usize = 63;

/// Longest pod name recorded: a DNS subdomain, at most 253 bytes. With
/// [`MAX_INSTANCES`] this bounds the cache to about 64 MB, whatever the
/// proxies send.
pub const MAX_POD_NAME_BYTES: usize = 253;

/// Why a report's instance was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The namespace or pod name is longer than Kubernetes allows.
    TooLong,
    /// [`MAX_INSTANCES`] pods are remembered already.
    Full,
}

/// `namespace/pod` → last report time.
#[derive(Debug, Default)]
pub struct Instances {
    last_report: Mutex<HashMap<Box<str>, Instant, foldhash::fast::RandomState>>,
}

thread_local! {
    /// The key of the instance being touched: built without allocating
    /// (touched once per report), at most [`MAX_NAMESPACE_BYTES`] +
    /// [`MAX_POD_NAME_BYTES`] + 1 bytes.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Instances {
    /// Records a report from `namespace/name` at `now` (when the report
    /// arrived), unless it cannot be a pod or the cache is full.
    pub fn touch(&self, namespace: &str, name: &str, now: Instant) -> Result<(), Refused> {
        if namespace.len() > MAX_NAMESPACE_BYTES || name.len() > MAX_POD_NAME_BYTES {
            return Err(Refused::TooLong);
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            key.push_str(namespace);
            key.push('/');
            key.push_str(name);
            let mut map = self.last_report.lock();
            if let Some(t) = map.get_mut(key.as_str()) {
                *t = now;
            } else if map.len() < MAX_INSTANCES {
                map.insert(key.as_str().into(), now);
            } else {
                return Err(Refused::Full);
            }
            Ok(())
        })
    }

    pub fn since_last_report(&self, pod_label: &str) -> Option<Duration> {
        let at = *self.last_report.lock().get(pod_label)?;
        let since = at.elapsed();
        (since < INSTANCE_TTL).then_some(since)
    }

    /// Forgets instances that have not reported within the TTL.
    pub fn expire(&self) {
        self.last_report
            .lock()
            .retain(|_, at| at.elapsed() < INSTANCE_TTL);
    }

    pub fn len(&self) -> usize {
        self.last_report.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_longer_than_kubernetes_allows_are_not_kept() {
        let instances = Instances::default();
        let ns = "n".repeat(MAX_NAMESPACE_BYTES);
        let pod = "p".repeat(MAX_POD_NAME_BYTES);
        assert_eq!(instances.touch(&ns, &pod, Instant::now()), Ok(()));
        assert_eq!(
            instances.touch(&format!("{ns}x"), "web-1", Instant::now()),
            Err(Refused::TooLong)
        );
        assert_eq!(
            instances.touch("shop", &"p".repeat(1 << 20), Instant::now()),
            Err(Refused::TooLong)
        );
        assert_eq!(instances.len(), 1);
        assert!(
            instances
                .since_last_report(&format!("{ns}/{pod}"))
                .is_some()
        );
    }
}
