package eventauth_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/eventauth"
)

var (
	idServerKey    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	otherKey       = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	idServerPub    = base64.RawStdEncoding.EncodeToString(idServerKey.Public().(ed25519.PublicKey))
	idServerPubURL = base64.RawURLEncoding.EncodeToString(idServerKey.Public().(ed25519.PublicKey))
	otherPub       = base64.RawStdEncoding.EncodeToString(otherKey.Public().(ed25519.PublicKey))
)

// signedBlock is the signed object of a third-party invite for mxid and
// token, signed with key as the identity server id.example would, and
// optionally altered after signing.
func signedBlock(t testing.TB, key ed25519.PrivateKey, mxid id.UserID, token string, alter func(m map[string]any)) string {
	t.Helper()
	m := map[string]any{"mxid": string(mxid), "token": token}
	// encoding/json sorts keys and writes no whitespace: canonical JSON for
	// these ASCII strings.
	msg, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(key, msg))
	m["signatures"] = map[string]any{"id.example": map[string]any{"ed25519:0": sig}}
	if alter != nil {
		alter(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func tpiMember(r *room, sender, target id.UserID, signed string) *fakeEvent {
	return r.memberContent(sender, target, fmt.Sprintf(`{"membership":"invite","third_party_invite":{"display_name":"x","signed":%s}}`, signed))
}

func tpiEvent(r *room, sender id.UserID, token, content string) *fakeEvent {
	return r.event("m.room.third_party_invite", sender, ptr(token), content)
}

func TestCheckThirdPartyInvite(t *testing.T) {
	keyContent := fmt.Sprintf(`{"display_name":"x","key_validity_url":"https://id.example/v","public_key":%q}`, idServerPub)
	// invite sets bob's m.room.third_party_invite for token "tok" and returns
	// his invite of mallory with the given signed block.
	invite := func(content string, signed func(t testing.TB) string) func(r *room) eventauth.Event {
		return func(r *room) eventauth.Event {
			r.set(tpiEvent(r, bob, "tok", content))
			return tpiMember(r, bob, mallory, signed(t))
		}
	}
	good := func(t testing.TB) string { return signedBlock(t, idServerKey, mallory, "tok", nil) }
	runRuleCases(t, []ruleCase{
		{num: "invite.1.7", desc: "signature matching public_key allowed", vers: "1-12",
			build: invite(keyContent, good)},
		{num: "invite.1.7", desc: "signature matching an entry of public_keys allowed", vers: "1-12",
			build: invite(fmt.Sprintf(`{"public_key":%q,"public_keys":[{"public_key":"junk"},{"public_key":%q}]}`, otherPub, idServerPub), good)},
		{num: "invite.1.7", desc: "public key in URL-safe base64 allowed", vers: "1-12",
			build: invite(fmt.Sprintf(`{"public_key":%q}`, idServerPubURL), good)},
		{num: "invite.1.7", desc: "unknown members of signed are covered by the signature", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string {
				m := map[string]any{"mxid": string(mallory), "token": "tok", "extra": []int{1, 2}}
				msg, _ := json.Marshal(m)
				m["signatures"] = map[string]any{"id.example": map[string]any{
					"curve25519:x": "ignored", "ed25519:0": base64.RawStdEncoding.EncodeToString(ed25519.Sign(idServerKey, msg))}}
				m["unsigned"] = map[string]any{"age": 5}
				out, _ := json.Marshal(m)
				return string(out)
			})},
		{num: "invite.1.7", desc: "third-party invite allowed even when the sender is no longer joined", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(tpiEvent(r, bob, "tok", keyContent))
				r.setMember(bob, "leave")
				return tpiMember(r, bob, mallory, good(t))
			}},
		{num: "invite.1.1", desc: "banned target rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(r.member(alice, mallory, "ban"))
				return invite(keyContent, good)(r)
			}, want: eventauth.RuleInvite3PIDBanned},
		{num: "invite.1.2", desc: "third_party_invite without signed rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.memberContent(bob, mallory, `{"membership":"invite","third_party_invite":{"display_name":"x"}}`)
			}, want: eventauth.RuleInvite3PIDNoSigned},
		{num: "invite.1.2", desc: "third_party_invite null rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				return r.memberContent(bob, mallory, `{"membership":"invite","third_party_invite":null}`)
			}, want: eventauth.RuleInvite3PIDNoSigned},
		{num: "invite.1.3", desc: "signed without token rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string {
				return signedBlock(t, idServerKey, mallory, "tok", func(m map[string]any) { delete(m, "token") })
			}), want: eventauth.RuleInvite3PIDSignedFields},
		{num: "invite.1.3", desc: "signed without mxid rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string {
				return signedBlock(t, idServerKey, mallory, "tok", func(m map[string]any) { delete(m, "mxid") })
			}), want: eventauth.RuleInvite3PIDSignedFields},
		{num: "invite.1.4", desc: "mxid other than state_key rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string { return signedBlock(t, idServerKey, dave, "tok", nil) }),
			want:  eventauth.RuleInvite3PIDMXID},
		{num: "invite.1.5", desc: "no m.room.third_party_invite for the token rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string { return signedBlock(t, idServerKey, mallory, "other", nil) }),
			want:  eventauth.RuleInvite3PIDNoEvent},
		{num: "invite.1.6", desc: "sender other than the m.room.third_party_invite sender rejected", vers: "1-12",
			build: func(r *room) eventauth.Event {
				r.set(tpiEvent(r, bob, "tok", keyContent))
				return tpiMember(r, carol, mallory, good(t))
			}, want: eventauth.RuleInvite3PIDSender},
		{num: "invite.1.8", desc: "signature by another key rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string { return signedBlock(t, otherKey, mallory, "tok", nil) }),
			want:  eventauth.RuleInvite3PIDSignature},
		{num: "invite.1.8", desc: "signed altered after signing rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string {
				return signedBlock(t, idServerKey, mallory, "tok", func(m map[string]any) { m["extra"] = 1 })
			}), want: eventauth.RuleInvite3PIDSignature},
		{num: "invite.1.8", desc: "signature under an unknown algorithm rejected", vers: "1-12",
			build: invite(keyContent, func(t testing.TB) string {
				return signedBlock(t, idServerKey, mallory, "tok", func(m map[string]any) {
					sigs := m["signatures"].(map[string]any)["id.example"].(map[string]any)
					sigs["foo:0"] = sigs["ed25519:0"]
					delete(sigs, "ed25519:0")
				})
			}), want: eventauth.RuleInvite3PIDSignature},
		{num: "invite.1.8", desc: "m.room.third_party_invite without public keys rejects", vers: "1-12",
			build: invite(`{"display_name":"x"}`, good), want: eventauth.RuleInvite3PIDSignature},
	})
}
