// Package push owns push notifications (client-server API, "Push
// Notifications"; push gateway API):
//
//   - rules.go, condition.go, eval.go: push rules. The spec's predefined
//     rules (defaults.json), a user's changes to them and its own rules
//     (Ruleset, kept as m.push_rules account data), and the evaluation of
//     every condition kind. Pure: no I/O.
//   - service.go: evaluation of each new event for the room's local
//     members, with what the rules need of each room kept in memory
//     (member count, display names, power levels), and the notification
//     rows that unread counts, /notifications and pushes come from.
//   - pusher.go: pushers and delivery to push gateways through a durable
//     per-pusher queue with backoff.
//
// Imports store, notify and user; imported by sync, api/client and server.
package push
