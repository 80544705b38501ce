//! One password check at a time per login, on this instance.
//!
//! An account locks after [`super::LOCKOUT_FAILURES`] wrong passwords, but a burst of
//! concurrent guesses would all read the failure count before any of them wrote it, and
//! so many more than that could be checked before the lock landed. Sign-ins for one login
//! therefore take turns: each reads the count its predecessor wrote. The lane is keyed by
//! the login's blind index, which an unknown login has too, so a login that does not exist
//! queues exactly like one that does and timing tells nothing. Across instances the bound
//! is one guess in flight per instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Lanes kept at most; beyond this, lanes nobody holds or waits for are dropped. Only a
/// cancelled wait can leave one behind, so the sweep is rare.
pub const LANES_TRACKED_MAX: usize = 10_000;

#[derive(Debug, Default)]
pub struct LoginLanes {
    lanes: Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
}

/// A turn in one login's lane, given up when dropped.
#[derive(Debug)]
pub struct LaneGuard<'a> {
    lanes: &'a LoginLanes,
    key: Vec<u8>,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl LoginLanes {
    /// Waits for the turn of `key` (a login's blind index).
    pub async fn enter(&self, key: Vec<u8>) -> LaneGuard<'_> {
        let lane = {
            let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            if lanes.len() >= LANES_TRACKED_MAX && !lanes.contains_key(&key) {
                lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
            }
            lanes.entry(key.clone()).or_default().clone()
        };
        let turn = lane.lock_owned().await;
        LaneGuard {
            lanes: self,
            key,
            turn: Some(turn),
        }
    }

    /// How many lanes are kept (for tests).
    pub fn tracked(&self) -> usize {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        drop(self.turn.take());
        let mut lanes = self.lanes.lanes.lock().unwrap_or_else(|p| p.into_inner());
        // Only the table holds it: nobody is waiting, the lane can go.
        if lanes
            .get(&self.key)
            .is_some_and(|lane| Arc::strong_count(lane) == 1)
        {
            lanes.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_login_takes_turns_and_others_do_not_wait() {
        let lanes = Arc::new(LoginLanes::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most_inside = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (lanes, inside, most_inside) = (lanes.clone(), inside.clone(), most_inside.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = lanes.enter(b"same-login".to_vec()).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most_inside.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        // Another login is not held up by the queue.
        let other = lanes.enter(b"other-login".to_vec()).await;
        drop(other);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most_inside.load(Ordering::SeqCst), 1, "one at a time");
        assert_eq!(lanes.tracked(), 0, "lanes go when nobody uses them");
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_that_blocks() {
        let lanes = LoginLanes::default();
        let held = lanes.enter(b"login".to_vec()).await;
        let waiting = lanes.enter(b"login".to_vec());
        // Polled once, then dropped: a client that went away while waiting.
        let _ = tokio::time::timeout(Duration::from_millis(1), waiting).await;
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(1), lanes.enter(b"login".to_vec()))
            .await
            .expect("the lane is free");
        drop(again);
        assert_eq!(lanes.tracked(), 0);
    }
}
