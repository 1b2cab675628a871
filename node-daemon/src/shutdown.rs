//! The daemon's stop signal: one [`Trigger`], and a [`Shutdown`] for every task that stops
//! on it (the collection loop, the servers, each sender, the Docker and ECS watchers).

use tokio::sync::watch;

/// A new signal: the trigger and its first listener (clone it for more).
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

/// Tells every [`Shutdown`] of its channel to stop; dropping it does as well.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub(crate) fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// One task's view of the stop signal.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Returns once the signal is given (at once if it was), or its trigger is gone.
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// [`Shutdown::wait`] as a future that owns the listener, for a task or a server.
    pub(crate) async fn wait_owned(mut self) {
        self.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_listener_stops_on_the_trigger_or_when_it_is_gone() {
        let (trigger, mut first) = channel();
        let second = first.clone();
        let waiting = tokio::spawn(second.wait_owned());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "stopped before the trigger");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the spawned listener stops")
            .unwrap();
        // Given before it waits: it returns at once.
        tokio::time::timeout(Duration::from_secs(1), first.wait())
            .await
            .expect("a late listener stops");

        let (trigger, mut orphan) = channel();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), orphan.wait())
            .await
            .expect("a listener whose trigger is gone stops");
    }
}
