//! `dolphin:bridge@0.1.x` served through the current world: the 0.1 host interfaces delegate to
//! the current ones, and calls convert their arguments down and their results up. What 0.1
//! cannot say reads as absent: no dedupe keys on webhook events, no retry hints.

use super::CallState;
use super::bindings::dolphin::bridge as now;
use super::bindings::v0_1::dolphin::bridge as old;

// ---------------------------------------------------------------------------------------------
// Calls: arguments down to 0.1, results up from it

pub(super) fn call_context(ctx: &now::types::CallContext) -> old::types::CallContext {
    old::types::CallContext {
        tenant: ctx.tenant.clone(),
        delivery_id: ctx.delivery_id.clone(),
        attempt: ctx.attempt,
    }
}

pub(super) fn incoming_event(event: &now::types::IncomingEvent) -> old::types::IncomingEvent {
    old::types::IncomingEvent {
        ticket_number: event.ticket_number.clone(),
        channel: event.channel.clone(),
        account_id: event.account_id.clone(),
        contact_id: event.contact_id.clone(),
        message_type: message_type_down(event.message_type),
        message: event.message.clone(),
        media_link: event.media_link.clone(),
        customer_name: event.customer_name.clone(),
        created_date: event.created_date.clone(),
        owner: event.owner.clone(),
        group_id: event.group_id.clone(),
        language: event.language.clone(),
        extra: event.extra.clone(),
    }
}

pub(super) fn webhook_request(request: &now::types::WebhookRequest) -> old::types::WebhookRequest {
    old::types::WebhookRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    }
}

pub(super) fn adapter_error(error: old::types::AdapterError) -> now::types::AdapterError {
    match error {
        old::types::AdapterError::RetryLater(reason) => {
            now::types::AdapterError::RetryLater(now::types::Retry { reason, after_ms: None })
        }
        old::types::AdapterError::Permanent(reason) => now::types::AdapterError::Permanent(reason),
    }
}

pub(super) fn webhook_outcome(outcome: old::types::WebhookOutcome) -> now::types::WebhookOutcome {
    now::types::WebhookOutcome {
        events: outcome
            .events
            .into_iter()
            .map(|event| now::types::WebhookEvent {
                event: bridge_event(event),
                dedupe_key: None,
            })
            .collect(),
        response: http_response_up(outcome.response),
    }
}

fn bridge_event(event: old::types::BridgeEvent) -> now::types::BridgeEvent {
    match event {
        old::types::BridgeEvent::Outgoing(e) => now::types::BridgeEvent::Outgoing(now::types::OutgoingEvent {
            ticket_number: e.ticket_number,
            message_type: message_type_up(e.message_type),
            message: e.message,
            media_link: e.media_link,
            channel: e.channel,
            customer_name: e.customer_name,
            extra: e.extra,
        }),
        old::types::BridgeEvent::Command(e) => now::types::BridgeEvent::Command(now::types::CommandEvent {
            ticket_number: e.ticket_number,
            command: match e.command {
                old::types::TicketCommand::Close => now::types::TicketCommand::Close,
            },
            channel: e.channel,
        }),
    }
}

fn message_type_down(kind: now::types::MessageType) -> old::types::MessageType {
    use now::types::MessageType as M;
    match kind {
        M::Text => old::types::MessageType::Text,
        M::Image => old::types::MessageType::Image,
        M::Video => old::types::MessageType::Video,
        M::Audio => old::types::MessageType::Audio,
        M::File => old::types::MessageType::File,
        M::Location => old::types::MessageType::Location,
    }
}

fn message_type_up(kind: old::types::MessageType) -> now::types::MessageType {
    use old::types::MessageType as M;
    match kind {
        M::Text => now::types::MessageType::Text,
        M::Image => now::types::MessageType::Image,
        M::Video => now::types::MessageType::Video,
        M::Audio => now::types::MessageType::Audio,
        M::File => now::types::MessageType::File,
        M::Location => now::types::MessageType::Location,
    }
}

fn http_response_up(response: old::types::HttpResponse) -> now::types::HttpResponse {
    now::types::HttpResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

fn http_response_down(response: now::types::HttpResponse) -> old::types::HttpResponse {
    old::types::HttpResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

// ---------------------------------------------------------------------------------------------
// Host interfaces: each 0.1 import is the current one

impl old::types::Host for CallState {}

impl old::log::Host for CallState {
    async fn log(
        &mut self,
        level: old::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        use old::log::Level as L;
        let level = match level {
            L::Trace => now::log::Level::Trace,
            L::Debug => now::log::Level::Debug,
            L::Info => now::log::Level::Info,
            L::Warn => now::log::Level::Warn,
            L::Error => now::log::Level::Error,
        };
        now::log::Host::log(self, level, message, fields).await
    }
}

impl old::config::Host for CallState {
    async fn get(&mut self, key: String) -> anyhow::Result<Option<String>> {
        now::config::Host::get(self, key).await
    }
}

impl old::http::Host for CallState {
    async fn send(
        &mut self,
        request: old::types::HttpRequest,
    ) -> anyhow::Result<Result<old::types::HttpResponse, old::http::HttpError>> {
        let request = now::types::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        let result = now::http::Host::send(self, request).await?;
        Ok(result.map(http_response_down).map_err(|error| match error {
            now::http::HttpError::Denied(m) => old::http::HttpError::Denied(m),
            now::http::HttpError::Timeout => old::http::HttpError::Timeout,
            now::http::HttpError::Connection(m) => old::http::HttpError::Connection(m),
            now::http::HttpError::LimitExceeded(m) => old::http::HttpError::LimitExceeded(m),
        }))
    }
}

impl old::kv::Host for CallState {
    async fn get(&mut self, key: String) -> anyhow::Result<Result<Option<Vec<u8>>, String>> {
        now::kv::Host::get(self, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<Result<(), String>> {
        now::kv::Host::set(self, key, value).await
    }

    async fn delete(&mut self, key: String) -> anyhow::Result<Result<(), String>> {
        now::kv::Host::delete(self, key).await
    }
}

impl old::three_dolphins::Host for CallState {
    async fn contact(
        &mut self,
        contact_id: String,
    ) -> anyhow::Result<Result<String, old::three_dolphins::LookupError>> {
        let result = now::three_dolphins::Host::contact(self, contact_id).await?;
        Ok(result.map_err(lookup_error_down))
    }

    async fn history(
        &mut self,
        ticket_number: String,
    ) -> anyhow::Result<Result<String, old::three_dolphins::LookupError>> {
        let result = now::three_dolphins::Host::history(self, ticket_number).await?;
        Ok(result.map_err(lookup_error_down))
    }
}

fn lookup_error_down(error: now::three_dolphins::LookupError) -> old::three_dolphins::LookupError {
    match error {
        now::three_dolphins::LookupError::NotFound => old::three_dolphins::LookupError::NotFound,
        now::three_dolphins::LookupError::Failed(m) => old::three_dolphins::LookupError::Failed(m),
    }
}
