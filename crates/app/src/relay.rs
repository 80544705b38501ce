//! Real-time delivery: who is connected, and a nudge to each of their connections when
//! something of theirs changes.
//!
//! An event says only *that* something happened and where to look (a conversation and a
//! position); it never carries a message. Clients fetch what changed through the API, which
//! authorizes and audits the read, so a missed or dropped event costs a delay, never data:
//! the next fetch from the client's cursor catches up. Each connection has a bounded queue
//! ([`CONNECTION_EVENTS_QUEUED_MAX`]); a connection that falls that far behind is closed and
//! its client resynchronises when it reconnects.
//!
//! This is the single-instance relay. Several instances behind a load balancer need the
//! same events fanned out between them (NATS, as the architecture plans); the [`Relay`]
//! type is the seam where that goes.

use std::collections::HashMap;
use std::sync::Mutex;

use haven_domain::UserId;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Events waiting for one connection before it is dropped as too slow.
pub const CONNECTION_EVENTS_QUEUED_MAX: usize = 256;
/// Connections one person may hold open at once (tabs and devices).
pub const CONNECTIONS_PER_USER_MAX: usize = 16;

/// Something for a client to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new message in a conversation, at `seq`.
    Message { thread: Uuid, seq: i64 },
    /// `user` has read a conversation up to `seq` (a read receipt).
    Read {
        thread: Uuid,
        user: UserId,
        seq: i64,
    },
    /// Who takes part in a conversation changed.
    Participants { thread: Uuid },
    /// A person's devices changed: clients re-check the device list and its proofs.
    Devices { user: UserId },
}

/// One open connection's end.
#[derive(Debug)]
pub struct Subscription {
    pub events: mpsc::Receiver<Event>,
    user: UserId,
    id: u64,
}

impl Subscription {
    pub fn user(&self) -> UserId {
        self.user
    }
}

#[derive(Debug, Default)]
struct Connections {
    next_id: u64,
    by_user: HashMap<UserId, Vec<(u64, mpsc::Sender<Event>)>>,
}

/// The connections of everyone connected to this instance.
#[derive(Debug, Default)]
pub struct Relay {
    connections: Mutex<Connections>,
}

impl Relay {
    /// Opens a connection for `user`; `None` when they already hold
    /// [`CONNECTIONS_PER_USER_MAX`].
    pub fn subscribe(&self, user: UserId) -> Option<Subscription> {
        let mut connections = self.lock();
        let open = connections.by_user.entry(user).or_default();
        open.retain(|(_, sender)| !sender.is_closed());
        if open.len() >= CONNECTIONS_PER_USER_MAX {
            return None;
        }
        let (sender, events) = mpsc::channel(CONNECTION_EVENTS_QUEUED_MAX);
        connections.next_id += 1;
        let id = connections.next_id;
        connections
            .by_user
            .entry(user)
            .or_default()
            .push((id, sender));
        Some(Subscription { events, user, id })
    }

    /// Closes a connection's registration (its receiver is being dropped).
    pub fn unsubscribe(&self, subscription: &Subscription) {
        let mut connections = self.lock();
        if let Some(open) = connections.by_user.get_mut(&subscription.user) {
            open.retain(|(id, _)| *id != subscription.id);
            if open.is_empty() {
                connections.by_user.remove(&subscription.user);
            }
        }
    }

    /// Nudges every connection of every one of `users`. A connection whose queue is full
    /// is dropped (its client resynchronises); nobody waits for a slow client.
    pub fn publish(&self, users: &[UserId], event: &Event) {
        let mut connections = self.lock();
        for user in users {
            if let Some(open) = connections.by_user.get_mut(user) {
                open.retain(|(_, sender)| sender.try_send(event.clone()).is_ok());
                if open.is_empty() {
                    connections.by_user.remove(user);
                }
            }
        }
    }

    /// Whether `user` has a connection open on this instance.
    pub fn is_connected(&self, user: UserId) -> bool {
        self.lock()
            .by_user
            .get(&user)
            .is_some_and(|open| open.iter().any(|(_, sender)| !sender.is_closed()))
    }

    /// Connections open now, for metrics and tests.
    pub fn connection_count(&self) -> usize {
        self.lock().by_user.values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_connection_of_a_user_gets_their_events_and_only_theirs() {
        let relay = Relay::default();
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let mut tab = relay.subscribe(alice).unwrap();
        let mut phone = relay.subscribe(alice).unwrap();
        let mut other = relay.subscribe(bob).unwrap();
        let event = Event::Message {
            thread: Uuid::new_v4(),
            seq: 7,
        };
        relay.publish(&[alice], &event);
        assert_eq!(tab.events.recv().await, Some(event.clone()));
        assert_eq!(phone.events.recv().await, Some(event));
        assert!(other.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_slow_connection_is_dropped_not_waited_for() {
        let relay = Relay::default();
        let user = UserId::generate();
        let mut slow = relay.subscribe(user).unwrap();
        let event = Event::Devices { user };
        for _ in 0..=CONNECTION_EVENTS_QUEUED_MAX {
            relay.publish(&[user], &event);
        }
        assert_eq!(relay.connection_count(), 0);
        // What was queued is still delivered, then the stream ends.
        let mut received = 0;
        while slow.events.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, CONNECTION_EVENTS_QUEUED_MAX);
    }

    #[test]
    fn connections_per_person_are_bounded_and_freed() {
        let relay = Relay::default();
        let user = UserId::generate();
        let open: Vec<_> = (0..CONNECTIONS_PER_USER_MAX)
            .map(|_| relay.subscribe(user).unwrap())
            .collect();
        assert!(relay.subscribe(user).is_none());
        relay.unsubscribe(&open[0]);
        assert!(relay.subscribe(user).is_some());
    }
}
