//! One process-wide drain signal: servers serve until it fires, long streams
//! end when it fires, and what has not finished a grace period later is cut
//! ([`Shutdown::drain`]), so one client that never finishes a request cannot
//! hold the process past Kubernetes' kill.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// How long servers may drain after the signal before their connections
/// are cut. Kubernetes kills a pod `terminationGracePeriodSeconds` (30 s
/// by default) after SIGTERM; the drain and then telemetry's final
/// remote-write flush (at most `remote_write::FLUSH_TIMEOUT`, 10 s) must
/// both fit before that: 15 + 10 leaves 5 s to spare.
pub const DRAIN_GRACE: Duration = Duration::from_secs(15);

/// Fires the signal (on drop as well, so a dropped handle never leaves
/// servers running).
#[derive(Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

/// A cheap, cloneable view of the signal, with the grace its drains get.
#[derive(Clone, Debug)]
pub struct Shutdown {
    fired: watch::Receiver<bool>,
    grace: Duration,
}

impl ShutdownHandle {
    /// A signal whose drains get [`DRAIN_GRACE`].
    pub fn new() -> (Self, Shutdown) {
        Self::with_grace(DRAIN_GRACE)
    }

    /// A signal whose drains get `grace` (`--shutdown-grace`).
    pub fn with_grace(grace: Duration) -> (Self, Shutdown) {
        let (tx, fired) = watch::channel(false);
        (Self(tx), Shutdown { fired, grace })
    }

    pub fn signal(&self) {
        let _ = self.0.send(true);
    }
}

impl Drop for ShutdownHandle {
    fn drop(&mut self) {
        self.signal();
    }
}

impl Shutdown {
    /// A signal that never fires, for tools and tests that run until dropped.
    pub fn never() -> Self {
        let (tx, fired) = watch::channel(false);
        std::mem::forget(tx);
        Self {
            fired,
            grace: DRAIN_GRACE,
        }
    }

    pub fn is_signaled(&self) -> bool {
        *self.fired.borrow()
    }

    /// How long a drain may take once the signal fired.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Resolves once the signal has fired.
    pub async fn signaled(mut self) {
        // An error means the handle is gone, which counts as fired.
        let _ = self.fired.wait_for(|fired| *fired).await;
    }

    /// Runs `serving` (servers that stop accepting at the signal, then
    /// finish what is open) to its end, or until the grace has passed since
    /// the signal: then it is dropped, cutting what was still open, and
    /// `None` says so (`what` names it in the warning logged).
    pub async fn drain<T>(self, what: &str, serving: impl Future<Output = T>) -> Option<T> {
        let grace = self.grace;
        tokio::pin!(serving);
        tokio::select! {
            out = &mut serving => return Some(out),
            () = self.signaled() => {}
        }
        match tokio::time::timeout(grace, serving).await {
            Ok(out) => Some(out),
            Err(_) => {
                tracing::warn!(
                    what,
                    grace = ?grace,
                    "still draining when the shutdown grace ran out; open connections cut"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_with_its_servers_or_at_the_grace() {
        let (handle, shutdown) = ShutdownHandle::with_grace(Duration::from_secs(3));
        // Servers that finish on their own are waited for.
        let quick = shutdown.clone().drain("quick", async { 7 });
        assert_eq!(quick.await, Some(7));

        // Servers that never finish are cut 3 s after the signal, not before.
        let started = tokio::time::Instant::now();
        let stuck = tokio::spawn(
            shutdown
                .clone()
                .drain("stuck", std::future::pending::<()>()),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!stuck.is_finished(), "no signal yet: still serving");
        handle.signal();
        assert_eq!(stuck.await.unwrap(), None);
        assert_eq!(started.elapsed(), Duration::from_secs(13));

        // Servers that finish inside the grace return their result.
        let slow = shutdown.drain("slow", async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            "done"
        });
        assert_eq!(slow.await, Some("done"));
    }
}
