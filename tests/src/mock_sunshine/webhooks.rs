//! The mock's webhook side: events shaped like the spec's webhook examples, POSTed to a target as
//! a v2 integration webhook (spec "Webhooks": `{app, webhook, events}`, the shared secret in
//! `X-API-Key`), and sent again as Sunshine's retry policy does.

use serde_json::{Value, json};

use super::{APP_ID, Message, MockSunshine, WEBHOOK_ID, new_id};
use crate::client::HttpResponse;

impl MockSunshine {
    /// `DELETE /v2/apps/{appId}/conversations/{id}` (spec `DeleteConversation`), as another
    /// integration or an admin would call it; on success (200) the subscribed webhook (if any) is
    /// sent the `conversation:remove` event (spec "Webhook Triggers": "When a conversation is
    /// deleted", payload `conversationRemoveEvent`). Returns the API's answer.
    pub async fn delete_conversation(&self, conversation_id: &str) -> HttpResponse {
        let (authorization, base_url, webhook) = {
            let state = self.state();
            (
                state.authorization.clone(),
                state.base_url.clone(),
                state.webhook.clone(),
            )
        };
        let kind = self
            .conversations()
            .into_iter()
            .find(|c| c.id == conversation_id)
            .map(|c| c.kind)
            .unwrap_or_default();
        let url = format!("{base_url}/v2/apps/{APP_ID}/conversations/{conversation_id}");
        let answer = self
            .client
            .send("DELETE", &url, &[("authorization", authorization.as_str())], Vec::new())
            .await;
        if answer.status == 200
            && let Some((target, secret)) = webhook
        {
            let event = json!({
                "id": new_id(0xe0),
                "createdAt": "2020-09-30T15:14:29.834Z",
                "type": "conversation:remove",
                "payload": { "conversation": { "id": conversation_id, "type": kind } },
            });
            let sent = self.send_webhook(&target, &secret, vec![event]).await;
            assert_eq!(sent.status, 200, "conversation:remove webhook: {}", sent.describe());
        }
        answer
    }

    /// Stores a business (agent) message in the conversation and returns its
    /// `conversation:message` webhook event, shaped like the spec's `conversationMessageEvent`.
    pub fn business_message(&self, conversation_id: &str, content: Value) -> Value {
        let author = json!({ "type": "business", "subtypes": ["agent"], "displayName": "Agent Smith" });
        self.message_event(conversation_id, author, content)
    }

    /// Stores a message of the conversation's user and returns its `conversation:message` event.
    pub fn user_message(&self, conversation_id: &str, text: &str) -> Value {
        let user_id = self
            .state()
            .conversations
            .iter()
            .find(|c| c.id == conversation_id)
            .and_then(|c| c.participants.first().cloned())
            .unwrap_or_default();
        let author = json!({ "type": "user", "userId": user_id, "displayName": "Customer" });
        self.message_event(conversation_id, author, json!({ "type": "text", "text": text }))
    }

    fn message_event(&self, conversation_id: &str, author: Value, content: Value) -> Value {
        let message = Message {
            id: new_id(0x3e),
            conversation_id: conversation_id.into(),
            author,
            content,
            metadata: Value::Null,
        };
        let event = json!({
            "id": new_id(0xe0),
            "createdAt": "2020-09-30T15:14:29.834Z",
            "type": "conversation:message",
            "payload": {
                "conversation": { "id": conversation_id, "type": "personal" },
                "message": message.json(),
            },
        });
        self.state().messages.push(message);
        event
    }

    /// A switchboard event (`switchboard:passControl`, `switchboard:releaseControl`, ...) of the
    /// conversation, with `reason` when given (the spec's `switchboardReleaseControl` schema).
    pub fn switchboard_event(&self, conversation_id: &str, event_type: &str, reason: Option<&str>) -> Value {
        let mut payload = json!({ "conversation": { "id": conversation_id, "type": "personal" } });
        if let Some(reason) = reason {
            payload["reason"] = reason.into();
        }
        json!({
            "id": new_id(0xe0),
            "createdAt": "2020-09-30T15:14:29.834Z",
            "type": event_type,
            "payload": payload,
        })
    }

    /// POSTs one v2 webhook request carrying `events` to `url`, with `secret` in `X-API-Key`.
    pub async fn send_webhook(&self, url: &str, secret: &str, events: Vec<Value>) -> HttpResponse {
        let body = json!({
            "app": { "id": APP_ID },
            "webhook": { "id": WEBHOOK_ID, "version": "v2" },
            "events": events,
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        self.state().last_webhook = Some((url.into(), secret.into(), body.clone()));
        self.post_webhook(url, secret, body).await
    }

    /// Sends the last webhook request again, the same body (same `events[].id`): the spec's
    /// Webhooks "Retry policy" ("attempted up to 5 times over a 15 minute window ... if the target
    /// responds with anything but a success (2XX) ... If no response is received within 20
    /// seconds, the call will be considered a failure and will also be reattempted").
    pub async fn resend_last_webhook(&self) -> HttpResponse {
        let (url, secret, body) = self.state().last_webhook.clone().expect("a webhook was sent before");
        self.post_webhook(&url, &secret, body).await
    }

    async fn post_webhook(&self, url: &str, secret: &str, body: Vec<u8>) -> HttpResponse {
        self.client
            .send(
                "POST",
                url,
                &[("content-type", "application/json"), ("x-api-key", secret)],
                body,
            )
            .await
    }
}
