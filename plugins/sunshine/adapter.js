// sunshine: a dolphin-bridge adapter for Zendesk Sunshine Conversations (API v2), in JavaScript.
// Setup and config keys are in the README beside this file. API shapes are those of the Sunshine
// Conversations OpenAPI spec (zendesk/sunshine-conversations-api-spec, openapi.yaml).
//
// 3Dolphins -> Sunshine (on-incoming), per ticket:
// 1. the user of the contact: KV `user:{contactId}`, else `POST /v2/apps/{appId}/users` with
//    `externalId` = `3dolphins-{contactId}`; a 409 (`conflict`: it exists) reads it with
//    `GET /v2/apps/{appId}/users/{externalId}`;
// 2. the ticket's conversation: KV `ticket:{ticketNumber}`, else (on a retry, first among the
//    user's conversations `GET .../conversations?filter[userId]=`, every page of 100 following
//    `meta.hasMore` / `page[after]`, whose `metadata.dolphinTicket` is the ticket, so a lost
//    answer never makes a second one) `POST .../conversations`
//    `{type: personal, participants: [{userId}], metadata}`. An app at Sunshine's default
//    `multiConvoEnabled: false` refuses a second conversation of a user (400): the ticket then
//    shares the user's personal conversation (each message carries `metadata.dolphinTicket`).
//    KV `conversation:{id}` maps back to the ticket that wrote last (`ticketNumber`) and the
//    tickets using it (`tickets`);
//    then (config `pass_control_to`, default `zd:agentWorkspace`; `none` turns it off) the
//    switchboard hand-off: `POST .../conversations/{id}/passControl` `{switchboardIntegration}`,
//    so that the message reaches the agent workspace (which makes the Zendesk ticket) and not the
//    switchboard's default integration (a bot, or the bridge's own integration). A known
//    conversation whose control left that integration (KV `control:{id}`, set by the webhook's
//    switchboard events, e.g. a ticket closed in Zendesk) is handed over again. A retried
//    delivery first reads `activeSwitchboardIntegration` and passes only when needed;
// 3. the message, posted as the user: `POST .../conversations/{id}/messages` with
//    `author: {type: user, userId}`, content text / image / file (video, audio) / location, and
//    `metadata.dolphinDeliveryId`. A retried delivery (attempt > 1) first looks for that id
//    among the conversation's latest messages (`GET .../messages`, the newest page of 100).
//    A 404 `conversation_not_found` (the conversation was deleted) or `user_not_found` drops the
//    mappings, opens a new conversation (and user) and posts once more.
//
// Sunshine -> 3Dolphins (on-vendor-webhook): v2 webhook `{app, webhook, events: [...]}`, whose
// `X-API-Key` the host verifies. Per event of a conversation this adapter made:
// - `conversation:message` by `author.type: business` (not a system message: `activity`, or
//   `author.subtypes` holding `activity`): an Outgoing text, image, file (mediaUrl; a `file` whose
//   `mediaType` is audio/* or video/* an `audio` / `video` event), or a location `lat,long`; the
//   user's own messages (ours) are ignored;
// - `switchboard:passControl` / `switchboard:releaseControl` with reason `ticketClosed`
//   (`payload.reason`, or `payload.metadata.reason`): a Close command, keyed by the conversation,
//   the ticket and the delivery that wrote there last, so that the pass and the release of one
//   close are one Close; any `switchboard:releaseControl`, or a `switchboard:passControl` to
//   another integration, marks the conversation for a new hand-off on the ticket's next message;
// - `conversation:remove`: the conversation's mappings are dropped (nothing for 3Dolphins).
// Every other event is keyed by Sunshine's own event id (`events[].id`) as its dedupe key, so an event
// that Sunshine sends again (a retried webhook) reaches 3Dolphins once.
//
// Errors: a 429 (or 503) from Sunshine is retried after its `Retry-After` (seconds), passed to the
// host as `after-ms` by the SDK; other 408/429/5xx answers, timeouts and connection failures are
// retried on the host's schedule; other 4xx are permanent (e.g. 423 `locked`: the conversation
// holds 30,000 messages). A text over Sunshine's 4096 characters is a permanent error before any
// call; a `displayName` is cut to Sunshine's 100 characters.

import { HttpStatusError, Permanent, basicAuth, config, guard, http, kv, logger, webhook } from '../../plugin-sdk/js/sdk.js';

/** A Zendesk subdomain (config `subdomain`): letters, digits and hyphens. */
const SUBDOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** Which message types the Sunshine content `file` carries (it has no audio/video type). */
const FILE_TYPES = new Set(['file', 'video', 'audio']);
/** The page size asked of `GET .../conversations` (spec `page.size`: default 25, maximum 100). */
const CONVERSATION_PAGE_SIZE = 100;
/** At most this many pages of a user's conversations are read (10,000 conversations). */
const MAX_CONVERSATION_PAGES = 100;
/** Spec `textMessage.text`: `maxLength: 4096`. */
const MAX_TEXT = 4096;
/** Spec `displayName`: `minLength: 1`, `maxLength: 100`. */
const MAX_DISPLAY_NAME = 100;
/** How many tickets a shared conversation remembers (for dropping their mappings). */
const MAX_SHARED_TICKETS = 20;
/** The switchboard integration given control by default (config `pass_control_to`). */
const DEFAULT_PASS_CONTROL_TO = 'zd:agentWorkspace';

/** The tenant's Sunshine settings. */
function settings() {
  const base = apiBase();
  const appId = config.require('app_id');
  return {
    app: `${base}/v2/apps/${encodeURIComponent(appId)}`,
    appId,
    headers: { authorization: basicAuth(config.require('key_id'), config.require('key_secret')) },
  };
}

/**
 * The API's base URL: `base_url` when set (e.g. `https://api.smooch.io` for a legacy Sunshine
 * Conversations app), else `https://{subdomain}.zendesk.com/sc` (spec `servers`: Zendesk
 * customers' base URL).
 */
function apiBase() {
  const explicit = config.getOr('base_url', '');
  if (explicit !== '') return explicit.replace(/\/+$/, '');
  const subdomain = config.getOr('subdomain', '').trim();
  if (subdomain === '') {
    throw new Permanent('config `subdomain` (the Zendesk subdomain) is required unless `base_url` is set');
  }
  if (!SUBDOMAIN.test(subdomain)) throw new Permanent('config `subdomain` must be a Zendesk subdomain, e.g. `acme`');
  return `https://${subdomain}.zendesk.com/sc`;
}

/** The Sunshine user id of the event's contact, created when missing. */
function ensureUser(api, event) {
  const key = `user:${event.contactId}`;
  const known = kv.getJson(key);
  if (typeof known?.userId === 'string') return known.userId;
  const externalId = `3dolphins-${event.contactId}`;
  const [givenName, ...rest] = event.customerName.trim().split(/\s+/);
  const profile = givenName ? { givenName, ...(rest.length > 0 ? { surname: rest.join(' ') } : {}) } : {};
  const created = http.postJson(
    `${api.app}/users`,
    { externalId, profile, metadata: { channel: event.channel, accountId: event.accountId } },
    { headers: api.headers, what: 'create user', accept: [409] },
  );
  const user =
    created.status === 409
      ? http.getJson(`${api.app}/users/${encodeURIComponent(externalId)}`, { headers: api.headers, what: 'get user' }).body?.user
      : created.body?.user;
  if (typeof user?.id !== 'string') throw new Permanent('Sunshine answered a user without an id');
  kv.setJson(key, { userId: user.id });
  return user.id;
}

/** The first `errors[].code` of a Sunshine error answer's body, or undefined. */
function errorCode(body) {
  const code = Array.isArray(body?.errors) ? body.errors[0]?.code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** `(code: title; ...)` of a Sunshine error answer's body, or ''. */
function describeErrors(body) {
  const list = Array.isArray(body?.errors) ? body.errors : [];
  const parts = list.map((e) => [e?.code, e?.title].filter(Boolean).join(': ')).filter(Boolean);
  return parts.length > 0 ? ` (${parts.join('; ')})` : '';
}

/**
 * The first of the user's conversations for which `predicate` holds, or undefined: every page of
 * `GET .../conversations?filter[userId]=` (spec "API Pagination and Records Limits": cursor
 * pagination, `page[size]`, `page[after]` a record id; `meta.hasMore`, `meta.afterCursor`).
 */
function findConversation(api, userId, predicate) {
  let after;
  for (let page = 0; page < MAX_CONVERSATION_PAGES; page += 1) {
    const cursor = after === undefined ? '' : `&page[after]=${encodeURIComponent(after)}`;
    const answer = http.getJson(
      `${api.app}/conversations?filter[userId]=${encodeURIComponent(userId)}&page[size]=${CONVERSATION_PAGE_SIZE}${cursor}`,
      { headers: api.headers, what: 'list conversations' },
    );
    const conversations = Array.isArray(answer.body?.conversations) ? answer.body.conversations : [];
    const found = conversations.find((c) => c !== null && typeof c === 'object' && predicate(c));
    if (found !== undefined) return found;
    if (answer.body?.meta?.hasMore !== true) return undefined;
    const next = answer.body.meta.afterCursor ?? conversations[conversations.length - 1]?.id;
    if (typeof next !== 'string' || next === after) return undefined;
    after = next;
  }
  logger.warn('sunshine: gave up listing the user conversations', { pages: MAX_CONVERSATION_PAGES });
  return undefined;
}

/** `text` cut to at most `max` characters (code points). */
function cut(text, max) {
  const chars = Array.from(text);
  return chars.length > max ? chars.slice(0, max).join('') : text;
}

/**
 * A new conversation for the ticket; at `multiConvoEnabled: false` (a 400/403/409 refusal while
 * the user has a personal conversation) the user's personal conversation instead.
 */
function createConversation(api, userId, event) {
  const displayName = cut((event.customerName || event.accountId || '').trim(), MAX_DISPLAY_NAME);
  const created = http.postJson(
    `${api.app}/conversations`,
    {
      type: 'personal',
      participants: [{ userId }],
      ...(displayName === '' ? {} : { displayName }),
      metadata: { dolphinTicket: event.ticketNumber, channel: event.channel },
    },
    { headers: api.headers, what: 'create conversation', accept: [400, 403, 409] },
  );
  if (created.status >= 200 && created.status < 300) {
    const id = created.body?.conversation?.id;
    if (typeof id !== 'string') throw new Permanent('Sunshine answered a conversation without an id');
    return id;
  }
  // Refused: with the app setting `multiConvoEnabled` off (Sunshine's default) "users are [not]
  // allowed to be part of several conversations". The user's own one carries this ticket too.
  const refused = () => new Permanent(`create conversation answered ${created.status}${describeErrors(created.body)}`);
  if (multiConvoEnabled(api) === true) throw refused();
  const shared = findConversation(api, userId, (c) => c.type === 'personal');
  if (shared === undefined || typeof shared.id !== 'string') throw refused();
  logger.info('sunshine: the user cannot have a second conversation (multiConvoEnabled off); the ticket shares it', {
    conversation: shared.id,
    refused: created.status,
  });
  return shared.id;
}

/**
 * The app's `settings.multiConvoEnabled` (`GET /v2/apps/{appId}`, spec `GetApp`, app scope), or
 * undefined when the key may not read the app (401/403) or the answer lacks it.
 */
function multiConvoEnabled(api) {
  const answer = http.getJson(api.app, { headers: api.headers, what: 'get app', accept: [401, 403] });
  const value = answer.body?.app?.settings?.multiConvoEnabled;
  return typeof value === 'boolean' ? value : undefined;
}

/**
 * Records that `ticketNumber` uses `conversationId` (both ways) and that delivery `deliveryId`
 * wrote there last (`lastDelivery`: the key of the ticket's next close).
 */
function linkTicket(ticketNumber, conversationId, userId, deliveryId) {
  const back = kv.getJson(`conversation:${conversationId}`);
  const tickets = (Array.isArray(back?.tickets) ? back.tickets : []).filter((t) => t !== ticketNumber);
  tickets.push(ticketNumber);
  kv.setJson(`conversation:${conversationId}`, {
    ticketNumber,
    tickets: tickets.slice(-MAX_SHARED_TICKETS),
    lastDelivery: deliveryId,
  });
  const link = { conversationId, userId };
  kv.setJson(`ticket:${ticketNumber}`, link);
  return link;
}

/** Drops the mappings of a conversation that is gone (deleted in Sunshine). */
function forgetConversation(conversationId, alsoTicket) {
  const back = kv.getJson(`conversation:${conversationId}`);
  const tickets = new Set([...(Array.isArray(back?.tickets) ? back.tickets : []), back?.ticketNumber, alsoTicket]);
  for (const ticket of tickets) {
    if (typeof ticket !== 'string') continue;
    if (kv.getJson(`ticket:${ticket}`)?.conversationId === conversationId) kv.delete(`ticket:${ticket}`);
  }
  kv.delete(`conversation:${conversationId}`);
  kv.delete(`control:${conversationId}`);
}

/** Opens (or, on a retry, finds) the ticket's conversation and records it (written by `ctx`). */
function openConversation(api, ctx, retried, event) {
  let userId = ensureUser(api, event);
  let conversationId = retried
    ? findConversation(api, userId, (c) => c.metadata?.dolphinTicket === event.ticketNumber)?.id
    : undefined;
  if (typeof conversationId !== 'string') {
    try {
      conversationId = createConversation(api, userId, event);
    } catch (e) {
      // A user deleted in Sunshine: made again, once.
      if (!(e instanceof HttpStatusError) || e.status !== 404 || errorCode(e.body) !== 'user_not_found') throw e;
      kv.delete(`user:${event.contactId}`);
      userId = ensureUser(api, event);
      conversationId = createConversation(api, userId, event);
    }
  }
  const link = linkTicket(event.ticketNumber, conversationId, userId, ctx.deliveryId);
  passControl(api, ctx, conversationId);
  return link;
}

/** `{conversationId, userId}` of the event's ticket, opened when missing. */
function ensureConversation(api, ctx, event) {
  const known = kv.getJson(`ticket:${event.ticketNumber}`);
  if (typeof known?.conversationId === 'string' && typeof known?.userId === 'string') {
    // A conversation shared by several tickets answers the ticket that wrote last; the delivery
    // that wrote last keys the ticket's next close.
    const back = kv.getJson(`conversation:${known.conversationId}`);
    if (back?.ticketNumber !== event.ticketNumber || back?.lastDelivery !== ctx.deliveryId) {
      linkTicket(event.ticketNumber, known.conversationId, known.userId, ctx.deliveryId);
    }
    // Control went elsewhere (a ticket closed in Zendesk releases it): hand the ticket over again.
    if (kv.getJson(`control:${known.conversationId}`)?.released === true) passControl(api, ctx, known.conversationId);
    return known;
  }
  return openConversation(api, ctx, ctx.attempt > 1, event);
}

/** Sunshine message content for an Incoming event; a text over 4096 characters is Permanent. */
function contentOf(event) {
  if (typeof event.message === 'string' && Array.from(event.message).length > MAX_TEXT) {
    throw new Permanent(`message text has ${Array.from(event.message).length} characters; Sunshine takes at most ${MAX_TEXT}`);
  }
  const caption = event.message ? { text: event.message } : {};
  if (event.messageType === 'image') return { type: 'image', mediaUrl: event.mediaLink, ...caption };
  if (FILE_TYPES.has(event.messageType)) return { type: 'file', mediaUrl: event.mediaLink, ...caption };
  if (event.messageType === 'location') {
    const [lat, long] = event.message.split(',').map((part) => Number(part.trim()));
    return { type: 'location', coordinates: { lat, long } };
  }
  return { type: 'text', text: event.message };
}

/**
 * Whether the conversation's newest page of messages already holds this delivery's message;
 * false when the conversation is gone (404: the post finds that out).
 */
function alreadyPosted(api, conversationId, deliveryId) {
  const answer = http.getJson(`${api.app}/conversations/${encodeURIComponent(conversationId)}/messages`, {
    headers: api.headers,
    what: 'list messages',
    accept: [404],
  });
  if (answer.status === 404) return false;
  return (answer.body?.messages ?? []).some((m) => m?.metadata?.dolphinDeliveryId === deliveryId);
}

/** Posts the message as the user; the answer (a 404 is returned, not thrown, when `accept404`). */
function postMessage(api, ctx, event, link, accept404) {
  return http.postJson(
    `${api.app}/conversations/${encodeURIComponent(link.conversationId)}/messages`,
    {
      author: { type: 'user', userId: link.userId },
      content: contentOf(event),
      metadata: { dolphinDeliveryId: ctx.deliveryId, dolphinTicket: event.ticketNumber },
    },
    { headers: api.headers, what: 'post message', accept: accept404 ? [404] : [] },
  );
}

/**
 * The switchboard integration the adapter gives control to (config `pass_control_to`, default
 * `zd:agentWorkspace`), or undefined when it is `none` (an app without a switchboard).
 */
function passControlTarget() {
  const target = config.getOr('pass_control_to', DEFAULT_PASS_CONTROL_TO).trim();
  return target.toLowerCase() === 'none' ? undefined : target;
}

/**
 * Whether `active` (spec `switchboardIntegrationWebhook`) is `target`, which names a switchboard
 * integration by id, name or integrationType (spec `passControlBody.switchboardIntegration`).
 */
function isTarget(active, target) {
  return active !== null && typeof active === 'object' && [active.id, active.name, active.integrationType].includes(target);
}

/**
 * Gives control of the conversation to the configured switchboard integration (spec
 * `PassControl`, `POST .../conversations/{id}/passControl`), so that the customer's message that
 * follows reaches it (the agent workspace makes a ticket) instead of the switchboard's default
 * integration. A retried delivery first reads the conversation (spec `GetConversation`,
 * `activeSwitchboardIntegration`) and passes only when the target is not already in control.
 * A 404 is left to the post that follows (it opens a new conversation); other 4xx are permanent.
 */
function passControl(api, ctx, conversationId) {
  const target = passControlTarget();
  if (target === undefined) return;
  const url = `${api.app}/conversations/${encodeURIComponent(conversationId)}`;
  if (ctx.attempt > 1) {
    const current = http.getJson(url, { headers: api.headers, what: 'get conversation', accept: [404] });
    if (current.status === 404) return;
    if (isTarget(current.body?.conversation?.activeSwitchboardIntegration, target)) {
      kv.delete(`control:${conversationId}`);
      return;
    }
  }
  const answer = http.postJson(
    `${url}/passControl`,
    { switchboardIntegration: target },
    { headers: api.headers, what: 'pass control', accept: [400, 403, 404, 409, 422] },
  );
  if (answer.status === 404 && errorCode(answer.body) === 'conversation_not_found') return;
  if (answer.status >= 300) {
    throw new Permanent(
      `pass control to \`${target}\` (config \`pass_control_to\`; \`none\` without a switchboard) answered ${answer.status}${describeErrors(answer.body)}`,
    );
  }
  kv.delete(`control:${conversationId}`);
}

/** Codes of a 404 that mean the mapping is stale: the conversation or the user was deleted. */
const GONE = new Set(['conversation_not_found', 'user_not_found']);

export const onIncoming = guard('on-incoming', (ctx, event) => {
  const api = settings();
  contentOf(event); // a message Sunshine refuses fails before anything is made
  const link = ensureConversation(api, ctx, event);
  if (ctx.attempt > 1 && alreadyPosted(api, link.conversationId, ctx.deliveryId)) {
    logger.info('sunshine: message already posted by an earlier attempt', { conversation: link.conversationId });
    return;
  }
  const answer = postMessage(api, ctx, event, link, true);
  if (answer.status !== 404) return;
  const code = errorCode(answer.body);
  if (!GONE.has(code)) throw new Permanent(`post message answered 404${describeErrors(answer.body)}`);
  // Deleted in Sunshine (its `conversation:remove` missed or not yet here): a new one, once.
  logger.info('sunshine: the conversation is gone; opening a new one', { conversation: link.conversationId, code });
  forgetConversation(link.conversationId, event.ticketNumber);
  if (code === 'user_not_found') kv.delete(`user:${event.contactId}`);
  postMessage(api, ctx, event, openConversation(api, ctx, false, event), false);
});

/**
 * The 3Dolphins type of a `file` content: Sunshine has no audio or video type, so agents' audio
 * and video arrive as `file` with their `mediaType` (spec `fileMessage.mediaType`).
 */
function fileTypeOf(content) {
  const family = typeof content.mediaType === 'string' ? content.mediaType.split('/')[0].toLowerCase() : '';
  return family === 'audio' || family === 'video' ? family : 'file';
}

/** The Outgoing event for a business message's content, or undefined when it has none to forward. */
function outgoingOf(ticketNumber, content) {
  const text = typeof content?.text === 'string' ? content.text : '';
  switch (content?.type) {
    case 'image':
    case 'file':
      if (typeof content.mediaUrl === 'string') {
        const type = content.type === 'file' ? fileTypeOf(content) : 'image';
        return webhook.outgoing(ticketNumber, type, text, content.mediaUrl);
      }
      break;
    case 'location': {
      const lat = content.coordinates?.lat;
      const long = content.coordinates?.long;
      if (typeof lat === 'number' && typeof long === 'number') return webhook.outgoing(ticketNumber, 'location', `${lat},${long}`);
      break;
    }
    default:
      break;
  }
  return text === '' ? undefined : webhook.outgoing(ticketNumber, 'text', text);
}

const CONTROL_EVENTS = new Set(['switchboard:passControl', 'switchboard:releaseControl']);

/**
 * Remembers (KV `control:{conversationId}`) that control of the conversation left the configured
 * integration: a `switchboard:releaseControl` (spec: the payload omits
 * `activeSwitchboardIntegration`, no integration is in control and the next message goes to the
 * switchboard's default integration), or a `switchboard:passControl` whose
 * `activeSwitchboardIntegration` is another one. The ticket's next message passes control again.
 */
function noteControl(conversationId, type, conversation) {
  const target = passControlTarget();
  if (target === undefined) return;
  if (type === 'switchboard:passControl' && isTarget(conversation?.activeSwitchboardIntegration, target)) {
    kv.delete(`control:${conversationId}`);
  } else {
    kv.setJson(`control:${conversationId}`, { released: true });
  }
}

/** The bridge event for one webhook event, or a string saying why it is ignored. */
function mapEvent(event) {
  const payload = event?.payload ?? {};
  const conversationId = payload.conversation?.id;
  if (typeof conversationId !== 'string') return `${event?.type}: no conversation`;
  const ticketNumber = kv.getJson(`conversation:${conversationId}`)?.ticketNumber;
  if (typeof ticketNumber !== 'string') return `${event?.type}: conversation ${conversationId} is not one of ours`;
  if (event.type === 'conversation:remove') {
    forgetConversation(conversationId);
    return `conversation ${conversationId} removed: its mappings are dropped`;
  }
  if (event.type === 'conversation:message') {
    const message = payload.message ?? {};
    if (message.author?.type !== 'business') return 'a user message';
    // System messages: `activity`, or the author's subtype `activity` (spec `author.subtypes`).
    const subtypes = Array.isArray(message.author.subtypes) ? message.author.subtypes : [];
    if (message.activity !== undefined || subtypes.includes('activity')) return 'a system activity message';
    return outgoingOf(ticketNumber, message.content) ?? `a ${message.content?.type} message without text or media`;
  }
  if (CONTROL_EVENTS.has(event.type)) {
    noteControl(conversationId, event.type, payload.conversation);
    const reason = payload.reason ?? payload.metadata?.reason;
    if (reason !== 'ticketClosed') return `${event.type} without reason ticketClosed`;
    // One close of a ticket may come as passControl and releaseControl: both get one key (the
    // ticket's last message when it closed), so one Close reaches 3Dolphins.
    const lastDelivery = kv.getJson(`conversation:${conversationId}`)?.lastDelivery ?? '';
    return { event: webhook.close(ticketNumber), dedupeKey: `close:${conversationId}:${ticketNumber}:${lastDelivery}` };
  }
  return `event type ${event.type}`;
}

export const onVendorWebhook = guard('on-vendor-webhook', (_ctx, request) => {
  const body = webhook.parseBody(request);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return webhook.outcome([], webhook.json(400, { error: 'body must be a JSON object' }));
  }
  if (!Array.isArray(body.events)) {
    return webhook.outcome([], webhook.json(400, { error: '`events` must be an array' }));
  }
  const appId = config.require('app_id');
  if (body.app?.id !== undefined && body.app.id !== appId) {
    return webhook.outcome([], webhook.json(200, { status: 'ignored', reason: 'another app' }));
  }
  const events = [];
  for (const event of body.events) {
    const mapped = mapEvent(event);
    if (typeof mapped === 'string') {
      logger.debug(`sunshine webhook event ignored: ${mapped}`, { event: event?.id ?? '' });
    } else if (mapped.dedupeKey !== undefined) {
      events.push(webhook.keyed(mapped.event, mapped.dedupeKey));
    } else {
      events.push(webhook.keyed(mapped, typeof event.id === 'string' && event.id !== '' ? event.id : undefined));
    }
  }
  return webhook.outcome(events, webhook.json(200, { status: 'ok', events: events.length }));
});
