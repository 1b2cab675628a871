//! The connection bound: a slot for every open connection, TCP and unix socket together.
//!
//! At the bound a new connection takes the slot of the connection that has waited longest
//! for a request head (one that said nothing, dribbles its head, or idles between requests),
//! which is closed: a flood of idle or slow connections cannot keep a real client out, since
//! a real client sends its head at once and is then never the one shed. Only when every
//! slot serves a request (each bounded by the body deadline) is the new connection refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// What one connection shares with the slot table, its deadlines and its requests.
#[derive(Debug, Default)]
pub struct SlotState {
    /// When the connection began waiting for its next request head, as a ticket of the
    /// table's running count (lower waited longer); [`SERVING`] while it serves one.
    waiting: AtomicU64,
    /// Which deadline ended the connection ([`Expired`] as a number; 0 while none did).
    expired: AtomicU8,
    /// Notified when the connection's slot is taken by a newer connection.
    pub shed: Notify,
}

/// The `waiting` value of a connection serving a request.
const SERVING: u64 = u64::MAX;

/// The deadline that ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Its request head did not arrive whole in time.
    Header = 1,
    /// It idled between requests for longer than allowed.
    Idle = 2,
}

impl SlotState {
    /// The ticket of the wait it is in; None while it serves a request.
    pub fn waiting(&self) -> Option<u64> {
        Some(self.waiting.load(Ordering::Acquire)).filter(|t| *t != SERVING)
    }

    /// A request head arrived whole: the connection is no longer one to shed.
    pub fn serving(&self) {
        self.waiting.store(SERVING, Ordering::Release);
    }

    pub fn set_expired(&self, expired: Expired) {
        self.expired.store(expired as u8, Ordering::Relaxed);
    }

    pub fn expired(&self) -> Option<Expired> {
        match self.expired.load(Ordering::Relaxed) {
            1 => Some(Expired::Header),
            2 => Some(Expired::Idle),
            _ => None,
        }
    }
}

/// The open connections, at most `max`.
#[derive(Debug)]
pub struct Slots {
    max: usize,
    open: Mutex<HashMap<u64, Arc<SlotState>>>,
    /// Slot ids and wait tickets, from one running count.
    counter: AtomicU64,
}

/// What [`Slots::admit`] decided for a new connection.
#[derive(Debug)]
pub enum Admission {
    /// It has a slot; `shed` when it took the slot of a connection that waited for a head.
    Admitted { slot: Slot, shed: bool },
    /// Every slot serves a request: close it at once.
    Refused,
}

/// A connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Arc<SlotState>,
    slots: Arc<Slots>,
}

impl Slot {
    pub fn state(&self) -> &Arc<SlotState> {
        &self.state
    }

    /// A request was answered: the connection waits for its next head, from now.
    pub fn waiting(&self) {
        self.state
            .waiting
            .store(self.slots.ticket(), Ordering::Release);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().remove(&self.id);
    }
}

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::default(),
            counter: AtomicU64::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// A slot for a new connection, shedding the longest-waiting one at the bound.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut open = self.lock();
        let mut shed = false;
        if open.len() >= self.max {
            let longest = open
                .iter()
                .filter_map(|(id, state)| Some((state.waiting()?, *id)))
                .min();
            let Some((_, id)) = longest else {
                return Admission::Refused;
            };
            if let Some(state) = open.remove(&id) {
                state.shed.notify_one();
            }
            shed = true;
        }
        let id = self.ticket();
        let state = Arc::new(SlotState {
            waiting: AtomicU64::new(self.ticket()),
            ..SlotState::default()
        });
        open.insert(id, state.clone());
        Admission::Admitted {
            slot: Slot {
                id,
                state,
                slots: self.clone(),
            },
            shed,
        }
    }

    fn ticket(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<SlotState>>> {
        // The table stays consistent whatever panicked while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(slots: &Arc<Slots>) -> (Slot, bool) {
        match slots.admit() {
            Admission::Admitted { slot, shed } => (slot, shed),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_bound_the_longest_waiting_connection_is_shed() {
        let slots = Slots::new(3);
        let (first, _) = admitted(&slots);
        let (second, _) = admitted(&slots);
        let (third, shed) = admitted(&slots);
        assert!(!shed);
        assert_eq!(slots.open(), 3);
        // The first answered a request and waits again: now the second waited longest.
        first.state().serving();
        first.waiting();
        let (_fourth, shed) = admitted(&slots);
        assert!(shed);
        assert_eq!(slots.open(), 3);
        {
            let notified = second.state().shed.notified();
            tokio::pin!(notified);
            assert!(notified.as_mut().enable(), "the second was told to close");
        }
        drop(second);
        assert_eq!(slots.open(), 3, "the shed one's slot was already given");
        drop(third);
        assert_eq!(slots.open(), 2);
    }

    #[test]
    fn when_every_slot_serves_a_request_a_new_connection_is_refused() {
        let slots = Slots::new(2);
        let held: Vec<Slot> = (0..2).map(|_| admitted(&slots).0).collect();
        for slot in &held {
            slot.state().serving();
        }
        assert!(matches!(slots.admit(), Admission::Refused));
        assert_eq!(slots.open(), 2);
        held[1].waiting();
        let (_newer, shed) = admitted(&slots);
        assert!(shed, "the one waiting again is shed");
        drop(held);
        assert_eq!(slots.open(), 1);
    }
}
