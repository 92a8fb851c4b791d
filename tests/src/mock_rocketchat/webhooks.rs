//! The webhooks the mock Rocket.Chat sends: payloads built as
//! `apps/meteor/app/livechat/server/hooks/sendToCRM.ts` builds them, sent as
//! `apps/meteor/app/livechat/server/lib/webhooks.ts` sends them.

use std::time::Duration;

use serde_json::{Value, json};

use super::{AGENT_ID, MockRocketChat, TOKEN_HEADER};
use crate::client::HttpResponse;

impl MockRocketChat {
    /// The `visitor` and room fields of a webhook for room `rid`
    /// (`getLivechatRoomGuestInfo`, apps/meteor/app/livechat/server/lib/Helper.ts and sendToCRM.ts).
    fn webhook_base(&self, rid: &str, kind: &str) -> Value {
        let state = self.state.lock().unwrap();
        let room = state.rooms.iter().find(|r| r.id == rid).expect("a known room");
        let visitor = state
            .visitors
            .iter()
            .find(|v| v.token == room.visitor_token)
            .expect("the room's visitor");
        json!({
            "_id": rid,
            "label": visitor.name,
            "topic": null,
            "createdAt": "2026-01-05T08:00:00.000Z",
            "lastMessageAt": "2026-01-05T08:01:00.000Z",
            "tags": [],
            "customFields": {},
            "visitor": {
                "_id": visitor.id,
                "token": visitor.token,
                "name": visitor.name,
                "username": format!("guest-{}", visitor.id),
                "email": null,
                "phone": null,
                "department": visitor.department,
                "ip": "127.0.0.1",
                "os": "Linux",
                "browser": "Other",
                "customFields": {},
            },
            "agent": {"_id": AGENT_ID, "username": "agent.sari", "name": "Sari", "email": "sari@example.com"},
            "type": kind,
            "messages": [],
        })
    }

    /// A `type: "Message"` webhook for an agent's text `text` in room `rid`.
    pub fn agent_message_webhook(&self, rid: &str, text: &str) -> Value {
        let mut payload = self.webhook_base(rid, "Message");
        let id = self.state.lock().unwrap().id("AgentMsg");
        payload["messages"] = json!([agent_message(&id, rid, text)]);
        payload
    }

    /// A `type: "Message"` webhook for a file an agent uploaded to room `rid` with `description`
    /// typed in the upload dialog and no message text.
    pub fn agent_file_webhook(&self, rid: &str, file_name: &str, mime: &str, description: &str) -> Value {
        self.agent_files_webhook(rid, "", &[(file_name, mime, description)])
    }

    /// A `type: "Message"` webhook for one agent message in room `rid` carrying the files
    /// `(name, MIME type, description)` and the text `msg` typed as their caption, as
    /// `sendFileMessage` (apps/meteor/app/file-upload/server/methods/sendFileMessage.ts) stores it
    /// (`msg` the typed text, `file` the first file, one attachment per file from
    /// `parseFileIntoMessageAttachments`, with `image_url` / `audio_url` / `video_url` by type),
    /// sent by sendToCRM.ts (`file` and `attachments`) and completed by `normalizeMessageFileUpload`
    /// (apps/meteor/app/utils/server/functions/normalizeMessageFileUpload.ts: `fileUpload` of the
    /// first file).
    pub fn agent_files_webhook(&self, rid: &str, msg: &str, files: &[(&str, &str, &str)]) -> Value {
        assert!(!files.is_empty(), "a file message carries a file");
        let mut payload = self.webhook_base(rid, "Message");
        let (id, file_ids) = {
            let mut state = self.state.lock().unwrap();
            let id = state.id("AgentMsg");
            (id, files.iter().map(|_| state.id("File")).collect::<Vec<_>>())
        };
        let attachments: Vec<Value> = files
            .iter()
            .zip(&file_ids)
            .map(|((name, mime, description), file_id)| {
                let path = format!("/file-upload/{file_id}/{name}");
                let mut attachment = json!({
                    "title": name,
                    "type": "file",
                    "description": description,
                    "title_link": path,
                    "title_link_download": true,
                    "fileId": file_id,
                });
                match mime.split('/').next() {
                    Some(kind @ ("image" | "audio" | "video")) => {
                        attachment[format!("{kind}_url")] = json!(path);
                        attachment[format!("{kind}_type")] = json!(mime);
                        attachment[format!("{kind}_size")] = json!(1024);
                    }
                    _ => attachment["size"] = json!(1024),
                }
                attachment
            })
            .collect();
        let (first_name, first_mime, _) = files[0];
        let first_path = format!("/file-upload/{}/{first_name}", file_ids[0]);
        let mut message = agent_message(&id, rid, msg);
        message["file"] = json!({"_id": file_ids[0], "name": first_name, "type": first_mime});
        message["attachments"] = json!(attachments);
        message["fileUpload"] = json!({"publicFilePath": format!("{}{first_path}?token=jwt", self.base_url()), "type": first_mime, "size": 1024});
        payload["messages"] = json!([message]);
        payload
    }

    /// A `type: "Message"` webhook for the visitor's own message in room `rid` (sent when
    /// "Send request on visitor message" is on): no `agentId`.
    pub fn visitor_message_webhook(&self, rid: &str, text: &str) -> Value {
        let mut payload = self.webhook_base(rid, "Message");
        let username = payload["visitor"]["username"].clone();
        let visitor_id = payload["visitor"]["_id"].clone();
        payload["messages"] = json!([{
            "u": {"_id": visitor_id, "username": username, "name": payload["visitor"]["name"]},
            "_id": "VisitorMsg0001",
            "username": username,
            "msg": text,
            "ts": "2026-01-05T08:00:30.000Z",
            "rid": rid,
            "_updatedAt": "2026-01-05T08:00:30.000Z",
        }]);
        payload
    }

    /// A `type: "LivechatSessionStart"` webhook for room `rid` (no messages of interest).
    pub fn session_start_webhook(&self, rid: &str) -> Value {
        self.webhook_base(rid, "LivechatSessionStart")
    }

    /// The `type: "LivechatSession"` webhook Rocket.Chat sends when an agent closes room `rid`;
    /// the room is closed first.
    pub fn session_closed_webhook(&self, rid: &str) -> Value {
        self.close_room(rid);
        self.closed_room_webhook(rid)
    }

    /// The `type: "LivechatSession"` webhook of room `rid`, already closed, as the
    /// `livechat.closeRoom` callback sends it (sendToCRM.ts: `getAdditionalFieldsByType` adds
    /// `departmentId`, `servedBy`, `closedAt`, `closedBy`, `closer`): `closer` is `"visitor"` and
    /// `closedBy` the visitor when the room was closed through `POST livechat/room.close`
    /// (closeRoom.ts), `"user"` and the agent when an agent closed it.
    pub fn closed_room_webhook(&self, rid: &str) -> Value {
        let closer = {
            let state = self.state.lock().unwrap();
            let room = state.rooms.iter().find(|r| r.id == rid).expect("a known room");
            assert!(!room.open, "room {rid} is still open");
            room.closer.clone().unwrap_or_else(|| "user".into())
        };
        let mut payload = self.webhook_base(rid, "LivechatSession");
        payload["departmentId"] = Value::Null;
        payload["servedBy"] = json!({"_id": AGENT_ID, "username": "agent.sari", "ts": "2026-01-05T08:00:05.000Z"});
        payload["closedAt"] = json!("2026-01-05T08:05:00.000Z");
        payload["closedBy"] = if closer == "visitor" {
            json!({"_id": payload["visitor"]["_id"], "username": payload["visitor"]["username"]})
        } else {
            json!({"_id": AGENT_ID, "username": "agent.sari"})
        };
        payload["closer"] = json!(closer);
        payload
    }

    /// The `type: "Message"` webhook Rocket.Chat sends when the agent edits the message of the
    /// earlier webhook `original` to `text`: `updateMessage` (apps/meteor/app/lib/server/functions/
    /// updateMessage.ts) sets `editedAt` and runs `afterSaveMessage`, whose
    /// `afterOmnichannelSaveMessage` callback sends the message again (sendToCRM.ts), with the
    /// same `_id` and `editedAt`.
    pub fn agent_edit_webhook(&self, original: &Value, text: &str) -> Value {
        let mut payload = original.clone();
        let message = &mut payload["messages"][0];
        message["msg"] = json!(text);
        message["editedAt"] = json!("2026-01-05T08:03:00.000Z");
        message["_updatedAt"] = json!("2026-01-05T08:03:00.000Z");
        payload
    }

    /// Sends `payload` to `url` as `sendRequest` (apps/meteor/app/livechat/server/lib/webhooks.ts)
    /// does: up to 5 attempts; done on a 200; given up on another status below 500 but 429;
    /// after a 5xx, a 429 or no answer within `http_timeout` (`Livechat_http_timeout`, 5000 ms by
    /// default) sent again `4 x http_timeout` later. Rocket.Chat's fetch gives up waiting at the
    /// timeout; here the late request is left to finish (the bridge has then received the webhook,
    /// as a server does that answers after Rocket.Chat stopped waiting) and awaited before this
    /// returns. Returns the statuses of the attempts, `None` for one that timed out.
    pub async fn send_webhook_as_rocketchat(
        &self,
        url: &str,
        payload: &Value,
        http_timeout: Duration,
    ) -> Vec<Option<u16>> {
        let body = serde_json::to_vec(payload).expect("JSON serialises");
        let mut statuses = Vec::new();
        let mut late = Vec::new();
        for _ in 0..5 {
            let client = self.client.clone();
            let (url, body, token) = (url.to_string(), body.clone(), self.webhook_token.clone());
            let mut request = tokio::spawn(async move {
                client
                    .send(
                        "POST",
                        &url,
                        &[("content-type", "application/json"), (TOKEN_HEADER, &token)],
                        body,
                    )
                    .await
            });
            // No timeout at all: every answer is late, however fast the machine runs the bridge
            // (a short one can still be met when this task is scheduled late).
            let answer = if http_timeout.is_zero() {
                Err(())
            } else {
                tokio::time::timeout(http_timeout, &mut request).await.map_err(|_| ())
            };
            match answer {
                Ok(answer) => {
                    let status = answer.expect("the webhook request task").status;
                    statuses.push(Some(status));
                    if status == 200 || (status < 500 && status != 429) {
                        break;
                    }
                }
                Err(_) => {
                    statuses.push(None);
                    late.push(request);
                }
            }
            if statuses.len() < 5 {
                tokio::time::sleep((http_timeout * 4).max(Duration::from_millis(5))).await;
            }
        }
        for request in late {
            request.await.expect("the webhook request task");
        }
        statuses
    }

    /// POSTs `payload` to `url` as Rocket.Chat's `sendRequest` does, with the token header.
    pub async fn send_webhook(&self, url: &str, payload: &Value) -> HttpResponse {
        let body = serde_json::to_vec(payload).expect("JSON serialises");
        self.client
            .send(
                "POST",
                url,
                &[
                    ("content-type", "application/json"),
                    (TOKEN_HEADER, &self.webhook_token),
                ],
                body,
            )
            .await
    }
}

/// An agent's message `_id` in room `rid` with text `msg`, as sendToCRM.ts lists it (`agentId`:
/// the sender is not the visitor).
fn agent_message(id: &str, rid: &str, msg: &str) -> Value {
    json!({
        "u": {"_id": AGENT_ID, "username": "agent.sari", "name": "Sari"},
        "_id": id,
        "username": "agent.sari",
        "msg": msg,
        "ts": "2026-01-05T08:01:00.000Z",
        "rid": rid,
        "agentId": AGENT_ID,
        "_updatedAt": "2026-01-05T08:01:00.000Z",
    })
}
