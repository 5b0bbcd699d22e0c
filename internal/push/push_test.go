package push_test

import (
	"encoding/json"
	"testing"

	"polder.dev/polder/internal/push"
)

func TestDefaultRules(t *testing.T) {
	raw := push.DefaultRules("@alice:example.org")
	var rs map[string][]struct {
		RuleID     string `json:"rule_id"`
		Default    bool   `json:"default"`
		Conditions []struct {
			Pattern string `json:"pattern"`
		} `json:"conditions"`
	}
	if err := json.Unmarshal(raw, &rs); err != nil {
		t.Fatalf("DefaultRules is not JSON: %v", err)
	}
	ids := map[string]bool{}
	for _, kind := range []string{"override", "underride"} {
		for _, r := range rs[kind] {
			ids[r.RuleID] = r.Default
		}
	}
	for _, want := range []string{".m.rule.master", ".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.message", ".m.rule.encrypted"} {
		if !ids[want] {
			t.Errorf("DefaultRules lacks %s", want)
		}
	}
	found := false
	for _, r := range rs["override"] {
		if r.RuleID == ".m.rule.invite_for_me" {
			for _, c := range r.Conditions {
				found = found || c.Pattern == "@alice:example.org"
			}
		}
	}
	if !found {
		t.Errorf("invite_for_me does not name the user")
	}
}
