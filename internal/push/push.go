// Package push owns push rules: the server-default rule set of the spec
// (client-server API, "Push Rules", "Predefined Rules") for each user.
// Evaluating rules and delivering to push gateways come with the push
// notifications issue; until then every user has the predefined rules.
//
// Pure: no I/O. Imported by api/client and sync.
package push

import (
	_ "embed"
	"encoding/json"
	"strings"

	"maunium.net/go/mautrix/id"
)

// defaults is the spec's predefined rule set, taken verbatim from the
// spec's push module. "[the user's Matrix ID]" stands for the user.
//
//go:embed defaults.json
var defaults string

const userPlaceholder = "[the user's Matrix ID]"

// DefaultRules returns the global rule set of a user: the predefined
// override, content, room, sender and underride rules.
func DefaultRules(user id.UserID) json.RawMessage {
	q, _ := json.Marshal(string(user))
	return json.RawMessage(strings.ReplaceAll(defaults, `"`+userPlaceholder+`"`, string(q)))
}
