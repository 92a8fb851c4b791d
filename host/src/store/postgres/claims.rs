//! The deliveries' claims and outcomes, written in groups (see [`super::grouped`]): the claims
//! asked for at once are one transaction, and so are the outcomes.
//!
//! A group first takes the head locks of its tickets in the locks' key order, as accepting and
//! replaying do, so two groups (of this process or another) covering the same tickets cannot
//! deadlock: the triggers that keep `ticket_heads` take the same locks again, held already.
//! A group the database refuses (a statement's error) is written again one write at a time, so
//! one bad write cannot fail the others; a group that cannot reach the database fails whole.

use anyhow::Context;
use deadpool_postgres::{Pool, Transaction};

use super::grouped::error_for_each;
use super::pooled_client;
use crate::store::{Lease, Outcome};

/// Takes the head locks of the tickets of the deliveries `$1` names, in the order of the locks'
/// keys (see [`super::outbox::lock_tickets_in_order`]).
pub(super) const LOCK_TICKETS_OF_DELIVERIES: &str = "SELECT lock_ticket_heads(owner, direction, ticket) FROM (
         SELECT DISTINCT hashtext(owner || '/' || direction || '/' || ticket) AS h, owner, direction, ticket
         FROM outbox WHERE seq = ANY($1) ORDER BY h, owner, direction, ticket OFFSET 0) sorted";

/// Claims the deliveries asked for that are still claimable: at the attempt count the caller
/// read, due by the lease's start, and no other event of the ticket leased. Of two deliveries
/// of one ticket asked for in one group, only the older can be claimed.
const CLAIM: &str = "UPDATE outbox SET attempts = outbox.attempts + 1, next_attempt_at = asked.until_ms,
         lease_owner = asked.owner
     FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], $5::bigint[])
         AS asked(seq, attempts, until_ms, owner, from_ms)
     WHERE outbox.seq = asked.seq AND outbox.state = 'pending' AND outbox.attempts = asked.attempts
     AND outbox.next_attempt_at <= asked.from_ms
     AND NOT EXISTS (
         SELECT 1 FROM outbox other WHERE other.owner = outbox.owner
         AND other.direction = outbox.direction AND other.ticket = outbox.ticket
         AND other.state = 'pending' AND other.seq <> outbox.seq
         AND other.lease_owner IS NOT NULL AND other.next_attempt_at > asked.from_ms)
     AND NOT EXISTS (
         SELECT 1 FROM outbox earlier WHERE earlier.seq = ANY($1) AND earlier.seq < outbox.seq
         AND earlier.owner = outbox.owner AND earlier.direction = outbox.direction
         AND earlier.ticket = outbox.ticket)
     RETURNING outbox.seq";

/// A claim asked for: the delivery, the attempt count its caller read, and the lease.
pub(super) struct ClaimAsked {
    pub seq: i64,
    pub attempts: u32,
    pub lease: Lease,
}

/// An outcome to record: the delivery, its attempt, what became of it, and when (the
/// database's clock, for `finished_at`).
pub(super) struct OutcomeAsked {
    pub seq: i64,
    pub attempt: u32,
    pub outcome: Outcome,
    pub now: i64,
}

/// Writes a group of claims; answers whether each was claimed.
pub(super) async fn claim_group(pool: Pool, asked: Vec<ClaimAsked>) -> Vec<anyhow::Result<bool>> {
    answer_each_write(&pool, &asked, |a| a.seq, claim_in_one_transaction).await
}

async fn claim_in_one_transaction(pool: &Pool, asked: &[ClaimAsked]) -> anyhow::Result<Vec<i64>> {
    let seqs: Vec<i64> = asked.iter().map(|a| a.seq).collect();
    let attempts: Vec<i32> = asked.iter().map(|a| a.attempts as i32).collect();
    let until: Vec<i64> = asked.iter().map(|a| a.lease.until_ms).collect();
    let owners: Vec<&str> = asked.iter().map(|a| a.lease.owner.as_str()).collect();
    let from: Vec<i64> = asked.iter().map(|a| a.lease.from_ms).collect();
    let mut client = pooled_client(pool).await?;
    let tx = client.transaction().await?;
    // The tickets' locks first, then the claim in a statement of its own (a new snapshot): a
    // claim of another event of a ticket, or a replay making an older one its head, is then
    // either seen committed or waits for this one.
    lock_tickets(&tx, &seqs).await?;
    let claim = tx.prepare_cached(CLAIM).await?;
    let claimed = tx
        .query(&claim, &[&seqs, &attempts, &until, &owners, &from])
        .await
        .context("claiming deliveries")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    tx.commit().await.context("store commit failed")?;
    client.done();
    Ok(claimed)
}

/// Writes a group of outcomes; answers whether each was recorded (false: the delivery was no
/// longer at that attempt, or no longer pending).
pub(super) async fn record_group(pool: Pool, asked: Vec<OutcomeAsked>) -> Vec<anyhow::Result<bool>> {
    answer_each_write(&pool, &asked, |a| a.seq, record_in_one_transaction).await
}

/// Writes `asked` with `write` (which returns the deliveries it changed) and answers whether
/// each was written; when the database refuses the group, writes each alone.
async fn answer_each_write<T>(
    pool: &Pool,
    asked: &[T],
    seq_of: impl Fn(&T) -> i64,
    write: impl AsyncFn(&Pool, &[T]) -> anyhow::Result<Vec<i64>>,
) -> Vec<anyhow::Result<bool>> {
    match write(pool, asked).await {
        Ok(written) => answer_each(&asked.iter().map(&seq_of).collect::<Vec<_>>(), &written),
        Err(e) if asked.len() > 1 && refused_by_the_database(&e) => {
            let mut answers = Vec::with_capacity(asked.len());
            for one in asked.chunks(1) {
                answers.push(write(pool, one).await.map(|written| written.contains(&seq_of(&one[0]))));
            }
            answers
        }
        Err(e) => error_for_each(&e, asked.len()),
    }
}

async fn record_in_one_transaction(pool: &Pool, asked: &[OutcomeAsked]) -> anyhow::Result<Vec<i64>> {
    let mut client = pooled_client(pool).await?;
    if let [one] = asked {
        // One outcome, one statement (its own transaction): the trigger takes its one lock.
        let recorded = write_outcomes(&*client, std::slice::from_ref(one)).await?;
        client.done();
        return Ok(recorded);
    }
    let tx = client.transaction().await?;
    lock_tickets(&tx, &asked.iter().map(|a| a.seq).collect::<Vec<_>>()).await?;
    let recorded = write_outcomes(&tx, asked).await?;
    tx.commit().await.context("store commit failed")?;
    client.done();
    Ok(recorded)
}

/// Writes `asked`'s outcomes, one statement per kind of outcome; returns the deliveries recorded.
async fn write_outcomes(
    client: &impl deadpool_postgres::GenericClient,
    asked: &[OutcomeAsked],
) -> anyhow::Result<Vec<i64>> {
    let mut delivered = Columns::default();
    let mut retried = Columns::default();
    let mut dead = Columns::default();
    let mut not_attempted = Columns::default();
    for a in asked {
        match &a.outcome {
            Outcome::Delivered => delivered.push(a, a.now, ""),
            Outcome::RetryAt(at, error) => retried.push(a, *at, error),
            Outcome::Dead(error) => dead.push(a, a.now, error),
            Outcome::NotAttempted(at, error) => not_attempted.push(a, *at, error),
        }
    }
    let statements = [
        (
            delivered,
            "UPDATE outbox SET state = 'delivered', finished_at = asked.at, last_error = NULL, lease_owner = NULL",
        ),
        (
            retried,
            "UPDATE outbox SET next_attempt_at = asked.at, last_error = asked.error, lease_owner = NULL",
        ),
        (
            dead,
            "UPDATE outbox SET state = 'dead', last_error = asked.error, finished_at = asked.at, lease_owner = NULL",
        ),
        (
            not_attempted,
            "UPDATE outbox SET attempts = outbox.attempts - 1, next_attempt_at = asked.at, last_error = asked.error,
                 lease_owner = NULL",
        ),
    ];
    let mut recorded = Vec::with_capacity(asked.len());
    for (columns, set) in statements {
        if columns.seqs.is_empty() {
            continue;
        }
        let sql = format!(
            "{set}
             FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[]) AS asked(seq, attempt, at, error)
             WHERE outbox.seq = asked.seq AND outbox.state = 'pending' AND outbox.attempts = asked.attempt
             RETURNING outbox.seq"
        );
        let statement = client.prepare_cached(&sql).await?;
        let rows = client
            .query(
                &statement,
                &[&columns.seqs, &columns.attempts, &columns.at, &columns.errors],
            )
            .await
            .context("recording delivery outcomes")?;
        recorded.extend(rows.iter().map(|row| row.get::<_, i64>(0)));
    }
    Ok(recorded)
}

/// One kind of outcome's parameters, a column each.
#[derive(Default)]
struct Columns {
    seqs: Vec<i64>,
    attempts: Vec<i32>,
    at: Vec<i64>,
    errors: Vec<String>,
}

impl Columns {
    fn push(&mut self, asked: &OutcomeAsked, at: i64, error: &str) {
        self.seqs.push(asked.seq);
        self.attempts.push(asked.attempt as i32);
        self.at.push(at);
        self.errors.push(error.to_string());
    }
}

async fn lock_tickets(tx: &Transaction<'_>, seqs: &[i64]) -> anyhow::Result<()> {
    let lock = tx.prepare_cached(LOCK_TICKETS_OF_DELIVERIES).await?;
    tx.execute(&lock, &[&seqs]).await.context("taking the tickets' locks")?;
    Ok(())
}

/// Whether each of `asked` is among `written`; a delivery asked for twice in one group is
/// written once, so only its first asking is answered yes.
fn answer_each(asked: &[i64], written: &[i64]) -> Vec<anyhow::Result<bool>> {
    let mut unanswered: std::collections::HashSet<i64> = written.iter().copied().collect();
    asked.iter().map(|seq| Ok(unanswered.remove(seq))).collect()
}

/// Whether the database itself refused a statement (an error of the SQL, a deadlock it broke),
/// rather than the connection or the pool failing.
fn refused_by_the_database(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|e| e.as_db_error().is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_asked_for_twice_is_answered_yes_once() {
        let answers: Vec<bool> = answer_each(&[3, 5, 3, 7], &[3, 7])
            .into_iter()
            .map(|a| a.unwrap())
            .collect();
        assert_eq!(answers, [true, false, false, true]);
    }
}
