//! The instance cache: which pods have reported, and when last.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a pod counts as reporting after its last report (the original's
/// ten minutes).
pub const INSTANCE_TTL: Duration = Duration::from_secs(600);

/// Most pods remembered at once: far above any cluster this serves, and a
/// bound on what proxies inventing pod names can make it hold.
pub const MAX_INSTANCES: usize = 200_000;

/// `namespace/pod` → last report time.
#[derive(Debug, Default)]
pub struct Instances {
    last_report: Mutex<HashMap<Box<str>, Instant>>,
}

impl Instances {
    /// Records a report from `namespace/name` now.
    pub fn touch(&self, namespace: &str, name: &str) {
        let now = Instant::now();
        let mut key = String::with_capacity(namespace.len() + name.len() + 1);
        key.push_str(namespace);
        key.push('/');
        key.push_str(name);
        let mut map = self.last_report.lock();
        if let Some(t) = map.get_mut(key.as_str()) {
            *t = now;
        } else if map.len() < MAX_INSTANCES {
            map.insert(key.into_boxed_str(), now);
        }
    }

    /// Time since `namespace/name` last reported, if within the TTL.
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
