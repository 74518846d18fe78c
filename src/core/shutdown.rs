//! One process-wide drain signal: servers serve until it fires, long streams
//! end when it fires.

use tokio::sync::watch;

/// Fires the signal (on drop as well, so a dropped handle never leaves
/// servers running).
#[derive(Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

/// A cheap, cloneable view of the signal.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl ShutdownHandle {
    pub fn new() -> (Self, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Self(tx), Shutdown(rx))
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
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn is_signaled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the signal has fired.
    pub async fn signaled(mut self) {
        // An error means the handle is gone, which counts as fired.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
