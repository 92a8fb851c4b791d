;; `shared-grow`: TEST ONLY. A component whose core module holds, besides the memory the
;; canonical ABI uses, a *shared* memory (the threads proposal) that `on-incoming` and
;; `on-vendor-webhook` grow by 65 535 pages, to 4 GiB. A shared memory's growth does not go through
;; the store's resource limiter, so `memory_mib` would not stop it; the bridge's engine is built
;; without the threads proposal, so the component must be refused when it is loaded. Were it
;; loaded and run, each export fails permanently with a report: "shared-grow: the shared memory
;; grew to 4 GiB, past the memory limit" or "shared-grow: the shared memory's growth was refused".
;;
;; The component-level part is the same as in `memories.wat`: what wit-component emits for the
;; `adapter` world of `wit/adapter.wit`.
(component
  (type $types-instance
    (instance
      (type $message-type (enum "text" "image" "video" "audio" "file" "location"))
      (export "message-type" (type $message-type-name (eq $message-type)))
      (type $option-string (option string))
      (type $pair (tuple string string))
      (type $pairs (list $pair))
      (type $incoming-event
        (record
          (field "ticket-number" string) (field "channel" string) (field "account-id" string)
          (field "contact-id" string) (field "message-type" $message-type-name)
          (field "message" string) (field "media-link" string) (field "customer-name" string)
          (field "created-date" string) (field "owner" string) (field "group-id" $option-string)
          (field "language" $option-string) (field "extra" $pairs)))
      (export "incoming-event" (type (eq $incoming-event)))
      (export "headers" (type $headers (eq $pairs)))
      (type $bytes (list u8))
      (type $webhook-request
        (record
          (field "method" string) (field "path" string) (field "query" string)
          (field "headers" $headers) (field "body" $bytes)))
      (export "webhook-request" (type (eq $webhook-request)))
      (type $outgoing-event
        (record
          (field "ticket-number" string) (field "message-type" $message-type-name)
          (field "message" string) (field "media-link" string) (field "channel" $option-string)
          (field "customer-name" $option-string) (field "extra" $pairs)))
      (export "outgoing-event" (type $outgoing-event-name (eq $outgoing-event)))
      (type $ticket-command (enum "close"))
      (export "ticket-command" (type $ticket-command-name (eq $ticket-command)))
      (type $command-event
        (record
          (field "ticket-number" string) (field "command" $ticket-command-name)
          (field "channel" $option-string)))
      (export "command-event" (type $command-event-name (eq $command-event)))
      (type $bridge-event
        (variant (case "outgoing" $outgoing-event-name) (case "command" $command-event-name)))
      (export "bridge-event" (type $bridge-event-name (eq $bridge-event)))
      (type $http-response
        (record (field "status" u16) (field "headers" $headers) (field "body" $bytes)))
      (export "http-response" (type $http-response-name (eq $http-response)))
      (type $events (list $bridge-event-name))
      (type $webhook-outcome
        (record (field "events" $events) (field "response" $http-response-name)))
      (export "webhook-outcome" (type (eq $webhook-outcome)))
      (type $call-context
        (record (field "tenant" string) (field "delivery-id" string) (field "attempt" u32)))
      (export "call-context" (type (eq $call-context)))
      (type $adapter-error (variant (case "retry-later" string) (case "permanent" string)))
      (export "adapter-error" (type (eq $adapter-error)))
    )
  )
  (import "dolphin:bridge/types@0.1.0" (instance $types (type $types-instance)))
  (alias export $types "incoming-event" (type $incoming-event-def))
  (import "incoming-event" (type $incoming-event (eq $incoming-event-def)))
  (alias export $types "webhook-request" (type $webhook-request-def))
  (import "webhook-request" (type $webhook-request (eq $webhook-request-def)))
  (alias export $types "webhook-outcome" (type $webhook-outcome-def))
  (import "webhook-outcome" (type $webhook-outcome (eq $webhook-outcome-def)))
  (alias export $types "call-context" (type $call-context-def))
  (import "call-context" (type $call-context (eq $call-context-def)))
  (alias export $types "adapter-error" (type $adapter-error-def))
  (import "adapter-error" (type $adapter-error (eq $adapter-error-def)))

  (core module $main
    (memory (export "memory") 1)
    ;; Shared memories need a maximum: 65 536 pages of 64 KiB, 4 GiB.
    (memory $shared 1 65536 shared)

    ;; Two return areas, each err(permanent(MESSAGE)) laid out as result<_, adapter-error>
    ;; (result tag at 0, adapter-error tag at 4, the string's pointer at 8 and length at 12).
    ;; At 16: the growth was refused; at 32: it succeeded.
    (data (i32.const 16) "\01\00\00\00\01\00\00\00\40\00\00\00\33\00\00\00")
    (data (i32.const 32) "\01\00\00\00\01\00\00\00\80\00\00\00\43\00\00\00")
    (data (i32.const 64) "shared-grow: the shared memory's growth was refused")
    (data (i32.const 128) "shared-grow: the shared memory grew to 4 GiB, past the memory limit")

    (global $next (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $start i32)
      (local.set $start
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $next (i32.add (local.get $start) (local.get 3)))
      (local.get $start))

    ;; Grows the shared memory to its maximum; the return area saying how that went.
    (func $grow (result i32)
      (if (result i32) (i32.eq (memory.grow $shared (i32.const 65535)) (i32.const -1))
        (then (i32.const 16))
        (else (i32.const 32))))

    (func (export "on-incoming") (param i32) (result i32)
      (call $grow))
    (func (export "on-vendor-webhook")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (call $grow))
  )
  (core instance $main (instantiate $main))
  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "realloc" (core func $realloc))

  (type $incoming-result (result (error $adapter-error)))
  (type $incoming-func
    (func (param "ctx" $call-context) (param "event" $incoming-event) (result $incoming-result)))
  (alias core export $main "on-incoming" (core func $on-incoming-core))
  (func $on-incoming (type $incoming-func)
    (canon lift (core func $on-incoming-core) (memory $memory) (realloc $realloc)
      string-encoding=utf8))
  (export "on-incoming" (func $on-incoming))

  (type $webhook-result (result $webhook-outcome (error $adapter-error)))
  (type $webhook-func
    (func (param "ctx" $call-context) (param "request" $webhook-request) (result $webhook-result)))
  (alias core export $main "on-vendor-webhook" (core func $on-vendor-webhook-core))
  (func $on-vendor-webhook (type $webhook-func)
    (canon lift (core func $on-vendor-webhook-core) (memory $memory) (realloc $realloc)
      string-encoding=utf8))
  (export "on-vendor-webhook" (func $on-vendor-webhook))
)
