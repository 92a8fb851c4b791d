//! `three-dolphins`: contact and conversation-history look-ups in 3Dolphins, made by the host.
//!
//! The bridge's API token reads every owner's records, so the host scopes look-ups to the
//! tenant's owner: the history of a ticket the owner has seen (an Incoming event of it was
//! accepted) and the contact of one of those tickets. Anything else answers `not-found`, as an
//! id that does not exist would (no oracle), without asking 3Dolphins. Look-ups are counted
//! against `limits.lookups`, and run on the I/O runtime like `http.send`: the wait is not the
//! guest's CPU time, but it is inside the call's wall-clock timeout.

use std::sync::Arc;

use tracing::Instrument as _;

use crate::metrics::{METRICS, Metrics};
use crate::runtime::{CallState, TenantHost, wit};
use crate::telemetry;
use crate::three_dolphins::ThreeDolphinsError;

use wit::three_dolphins::LookupError;

/// Which look-up an adapter asked for.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    Contact,
    History,
}

impl Lookup {
    fn name(self) -> &'static str {
        match self {
            Lookup::Contact => "contact",
            Lookup::History => "history",
        }
    }

    /// Whether `id` is the tenant's owner's to look up.
    async fn in_scope(self, host: &TenantHost, id: &str) -> anyhow::Result<bool> {
        let store = &host.services.store;
        match self {
            Lookup::Contact => store.is_contact_of_owner(&host.owner, id).await,
            Lookup::History => Ok(store.ticket(&host.owner, id).await?.is_some()),
        }
    }

    /// Asks 3Dolphins.
    async fn fetch(self, host: &TenantHost, id: &str) -> Result<String, ThreeDolphinsError> {
        let client = &host.services.three_dolphins;
        match self {
            Lookup::Contact => client.contact(id).await,
            Lookup::History => client.history(id).await,
        }
    }
}

/// What became of one look-up that was within the call's limit.
enum Answer {
    Fetched(Result<String, ThreeDolphinsError>),
    OutOfScope,
    StoreFailed(anyhow::Error),
}

impl CallState {
    /// Counts one look-up; `Err` (the answer the adapter gets) when over the limit.
    fn count_lookup(&mut self) -> Result<(), LookupError> {
        self.lookups += 1;
        if self.lookups > self.host.limits.lookups {
            return Err(LookupError::Failed(format!(
                "lookup limit of {} per call exceeded (limits.lookups)",
                self.host.limits.lookups
            )));
        }
        Ok(())
    }

    /// Performs one look-up of `id` if the call's limit and the tenant's owner allow it.
    ///
    /// In span `3dolphins.lookup` (a child of the call's), naming the look-up and its outcome,
    /// never the id.
    async fn lookup(&mut self, lookup: Lookup, id: String) -> anyhow::Result<Result<String, LookupError>> {
        let span = telemetry::span(|| {
            tracing::info_span!("3dolphins.lookup", otel.kind = "client", lookup = lookup.name(),
                outcome = tracing::field::Empty, error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty)
        });
        if let Err(refused) = self.count_lookup() {
            Metrics::count(&METRICS.lookups, &self.host.tenant, "limit_exceeded");
            telemetry::record_error(&span, "limit_exceeded");
            return Ok(Err(refused));
        }
        let host: Arc<TenantHost> = self.host.clone();
        let fetch = async move {
            match lookup.in_scope(&host, &id).await {
                Ok(true) => Answer::Fetched(lookup.fetch(&host, &id).await),
                Ok(false) => Answer::OutOfScope,
                Err(e) => Answer::StoreFailed(e),
            }
        };
        let answer = self.on_io_runtime(fetch.instrument(span.clone())).await?;
        let (outcome, result) = match answer {
            Answer::Fetched(Ok(data)) => ("found", Ok(data)),
            Answer::Fetched(Err(ThreeDolphinsError::NotFound)) => ("not_found", Err(LookupError::NotFound)),
            Answer::Fetched(Err(e)) => ("failed", Err(LookupError::Failed(e.to_string()))),
            Answer::OutOfScope => {
                // No id: the warning says that it happened, the adapter's own log says what.
                tracing::warn!(tenant = %self.host.tenant, delivery_id = %self.delivery_id, lookup = lookup.name(),
                    "3Dolphins look-up outside the tenant's owner answered not-found");
                ("out_of_scope", Err(LookupError::NotFound))
            }
            Answer::StoreFailed(e) => (
                "failed",
                Err(LookupError::Failed(format!(
                    "could not check the {} look-up against the store: {e:#}",
                    lookup.name()
                ))),
            ),
        };
        Metrics::count(&METRICS.lookups, &self.host.tenant, outcome);
        span.record("outcome", outcome);
        if outcome == "failed" {
            telemetry::record_error(&span, "failed");
        }
        Ok(result)
    }
}

impl wit::three_dolphins::Host for CallState {
    async fn contact(&mut self, contact_id: String) -> anyhow::Result<Result<String, LookupError>> {
        self.lookup(Lookup::Contact, contact_id).await
    }

    async fn history(&mut self, ticket_number: String) -> anyhow::Result<Result<String, LookupError>> {
        self.lookup(Lookup::History, ticket_number).await
    }
}
