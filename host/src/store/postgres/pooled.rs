//! A pooled connection that goes back to the pool only when its user says its work is done.
//!
//! A store call dropped in the middle of a statement (its caller timed out, as `/readyz` does
//! after 2 s, or an adapter's call was cancelled) would otherwise give its connection back with
//! the statement still running, and the next call on it would wait behind a statement nobody
//! awaits. Such a connection is closed instead; the server ends its statement and transaction.

use std::ops::{Deref, DerefMut};

use deadpool_postgres::Object;

/// A connection of the pool, closed when dropped before [`Pooled::done`].
pub struct Pooled {
    object: Option<Object>,
}

impl Pooled {
    /// Wraps a connection just taken from the pool.
    pub fn new(object: Object) -> Pooled {
        Pooled { object: Some(object) }
    }

    /// The work is over (a statement answered, a transaction committed or rolled back): the
    /// connection goes back to the pool.
    pub fn done(mut self) {
        drop(self.object.take());
    }
}

impl Deref for Pooled {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.object.as_ref().expect("a pooled connection is held until done")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Object {
        self.object.as_mut().expect("a pooled connection is held until done")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Taken out of the pool: dropping the client closes the connection.
            drop(Object::take(object));
        }
    }
}
