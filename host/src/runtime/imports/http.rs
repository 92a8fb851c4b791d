//! `http`: outbound HTTP requests made by the host for the adapter, through the call's
//! [`OutgoingHttp`](crate::runtime::outgoing_http::OutgoingHttp) (its budget and the tenant's
//! egress policy).

use crate::runtime::adapter_log::loggable;
use tracing::Instrument as _;

use crate::runtime::outgoing_http::{Refusal, request_span, send_http};
use crate::runtime::{CallState, wit, wt};

impl wit::http::Host for CallState {
    async fn send(
        &mut self,
        request: wt::HttpRequest,
    ) -> anyhow::Result<Result<wt::HttpResponse, wit::http::HttpError>> {
        use wit::http::HttpError;
        let span = request_span("http.send");
        if let Err(refusal) = self.http.admit() {
            crate::telemetry::record_error(&span, refusal.kind());
            return match refusal {
                // A trap, not an answer: the guest must not go on as if the vendor had been asked.
                Refusal::LeaseEnded => Err(refusal.into()),
                Refusal::TooManyRequests(_) => Ok(Err(HttpError::LimitExceeded(refusal.to_string()))),
            };
        }
        let send = send_http(self.host.clone(), request, span.clone()).instrument(span);
        let result = self.on_io_runtime(send).await?;
        if let Err(HttpError::Denied(reason)) = &result {
            // The reason quotes the adapter's request: it is logged as the adapter's own text.
            let reason = loggable(reason, &self.host.secrets);
            self.charge_log(reason.len())?;
            tracing::warn!(tenant = %self.host.tenant, delivery_id = %self.delivery_id, %reason, "adapter HTTP request denied");
        }
        Ok(result)
    }
}
