package e2ee

// Cross-signing (client-server API, "Cross-signing"): POST
// /keys/device_signing/upload and POST /keys/signatures/upload.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"polder.dev/polder/internal/keys"
	"polder.dev/polder/internal/mxerr"
	"polder.dev/polder/internal/store"
)

// CrossSigningUpload is the body of POST /keys/device_signing/upload
// (without auth): each key optional.
type CrossSigningUpload struct {
	MasterKey      json.RawMessage `json:"master_key,omitempty"`
	SelfSigningKey json.RawMessage `json:"self_signing_key,omitempty"`
	UserSigningKey json.RawMessage `json:"user_signing_key,omitempty"`
}

// csKey is a parsed cross-signing key.
type csKey struct {
	typ   string
	canon []byte
	name  string // the public key, unpadded base64
	pub   ed25519.PublicKey
}

// parseCrossSigningKey checks a cross-signing key of user: its user_id, its
// usage and its one ed25519 key.
func parseCrossSigningKey(raw []byte, user id.UserID, typ string) (*csKey, error) {
	c, err := canonicalObject(raw, typ+"_key")
	if err != nil {
		return nil, err
	}
	var h crossSigningHead
	if err := json.Unmarshal(c, &h); err != nil {
		return nil, mxerr.BadJSON("%s_key: %v", typ, err)
	}
	if h.UserID != user || !slices.Contains(h.Usage, typ) {
		return nil, mxerr.InvalidParam("Invalid %s key: it must be %s's and have usage %s", typ, user, typ)
	}
	name, pub, err := h.onlyKey()
	if err != nil {
		return nil, mxerr.InvalidParam("Invalid %s key: %v", typ, err)
	}
	return &csKey{typ: typ, canon: c, name: name, pub: pub}, nil
}

// storedKey parses a stored cross-signing key.
func storedKey(k store.CrossSigningKey) (*csKey, error) {
	pub, err := ed25519Key(k.KeyID)
	if err != nil {
		return nil, err
	}
	return &csKey{typ: k.Type, canon: k.JSON, name: k.KeyID, pub: pub}, nil
}

// parseUpload parses the keys of an upload, by type.
func parseUpload(user id.UserID, up CrossSigningUpload) (map[string]*csKey, error) {
	out := map[string]*csKey{}
	for typ, raw := range map[string]json.RawMessage{
		store.MasterKey: up.MasterKey, store.SelfSigningKey: up.SelfSigningKey, store.UserSigningKey: up.UserSigningKey,
	} {
		if !present(raw) {
			continue
		}
		k, err := parseCrossSigningKey(raw, user, typ)
		if err != nil {
			return nil, err
		}
		out[typ] = k
	}
	return out, nil
}

// CrossSigningNeedsAuth reports whether an upload of cross-signing keys
// needs user-interactive authentication (spec v1.11, MSC3967): not when
// the user has no master key yet, nor when every key uploaded is the one
// stored. Errors: those of a malformed upload (as UploadCrossSigningKeys).
func (s *Service) CrossSigningNeedsAuth(ctx context.Context, user id.UserID, up CrossSigningUpload) (bool, error) {
	ks, err := parseUpload(user, up)
	if err != nil {
		return false, err
	}
	existing, err := s.db.CrossSigningKeys(ctx, []id.UserID{user})
	if err != nil {
		return false, err
	}
	if _, ok := existing[user][store.MasterKey]; !ok {
		return false, nil
	}
	for typ, k := range ks {
		old, ok := existing[user][typ]
		if !ok || !bytes.Equal(old.JSON, k.canon) {
			return true, nil
		}
	}
	return false, nil
}

// UploadCrossSigningKeys stores cross-signing keys of user (the caller has
// done UIA when CrossSigningNeedsAuth asked for it). The self-signing and
// user-signing keys must be signed by the master key uploaded with them,
// or else by the stored one. A change of the master or self-signing key
// is a device list change of user sent to its servers as an
// m.signing_key_update EDU; a change of the user-signing key concerns
// only user's own devices.
//
// Errors: M_INVALID_PARAM for a key of another user or usage, or not one
// ed25519 key; M_MISSING_PARAM when there is no master key to check
// signatures with; M_INVALID_SIGNATURE for a key the master key did not
// sign; M_FORBIDDEN for a public key that is one of user's device IDs.
func (s *Service) UploadCrossSigningKeys(ctx context.Context, user id.UserID, up CrossSigningUpload) error {
	ks, err := parseUpload(user, up)
	if err != nil || len(ks) == 0 {
		return err
	}
	existing, err := s.db.CrossSigningKeys(ctx, []id.UserID{user})
	if err != nil {
		return err
	}
	master := ks[store.MasterKey]
	if master == nil {
		if k, ok := existing[user][store.MasterKey]; ok {
			if master, err = storedKey(k); err != nil {
				return err
			}
		}
	}
	for _, typ := range []string{store.SelfSigningKey, store.UserSigningKey} {
		k := ks[typ]
		if k == nil {
			continue
		}
		if master == nil {
			return mxerr.MissingParam("No master key available to check the %s key's signature", typ)
		}
		if err := keys.VerifyJSON(k.canon, string(user), id.KeyID("ed25519:"+master.name), master.pub); err != nil {
			return mxerr.New("M_INVALID_SIGNATURE", "Invalid signature on the %s key: %v", typ, err)
		}
	}
	for _, k := range ks {
		if _, err := s.db.Device(ctx, user.Localpart(), k.name); err == nil {
			return mxerr.Forbidden("Key ID in use: the %s key's public key is a device ID", k.typ)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	var public, private bool
	var pos int64
	err = s.db.WithTx(ctx, "e2ee_cross_signing_upload", func(tx *store.Tx) error {
		cur, err := tx.CrossSigningKeys(ctx, []id.UserID{user})
		if err != nil {
			return err
		}
		for typ, k := range ks {
			if old, ok := cur[user][typ]; ok && bytes.Equal(old.JSON, k.canon) {
				continue
			}
			if err := tx.SetCrossSigningKey(ctx, store.CrossSigningKey{UserID: user, Type: typ, KeyID: k.name, JSON: k.canon}); err != nil {
				return err
			}
			if typ == store.UserSigningKey {
				private = true
			} else {
				public = true
			}
		}
		switch {
		case public:
			pos, err = tx.MarkDeviceListChanged(ctx, "", user)
		case private:
			pos, err = tx.MarkDeviceListChanged(ctx, user, user)
		}
		return err
	})
	if err != nil {
		return err
	}
	if public {
		s.wake(ctx, pos, []id.UserID{user})
		if err := s.sendSigningKeyUpdate(ctx, user); err != nil {
			s.log.Warn("queue signing key update", "user_id", user, "err", err)
		}
	} else if private {
		s.n.Wake(pos, notifyUser(user))
	}
	return nil
}

// signaturesBy returns the signatures by signer in a canonical key object.
func signaturesBy(canon []byte, signer id.UserID) map[string]string {
	var h struct {
		Signatures map[id.UserID]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(canon, &h) != nil {
		return nil
	}
	return h.Signatures[signer]
}

// UploadSignatures stores the signatures user uploads (POST
// /keys/signatures/upload): per target user and key ID, the key object
// with the new signatures. Accepted are signatures of user's own devices
// by its self-signing key, of its own master key by its devices, and of
// other users' master keys by its user-signing key; the object must be the
// stored key. It returns the failures per user and key ID
// (M_INVALID_SIGNATURE, M_NOT_FOUND, M_BAD_JSON), as Synapse's
// upload_signatures_for_device_keys.
func (s *Service) UploadSignatures(ctx context.Context, user id.UserID, signed map[id.UserID]map[string]json.RawMessage) (map[id.UserID]map[string]json.RawMessage, error) {
	failures := map[id.UserID]map[string]json.RawMessage{}
	fail := func(u id.UserID, key string, f json.RawMessage) {
		if failures[u] == nil {
			failures[u] = map[string]json.RawMessage{}
		}
		failures[u][key] = f
	}
	n := 0
	for _, m := range signed {
		n += len(m)
	}
	if n > maxQueryDevice {
		return nil, mxerr.TooLarge("at most %d keys per upload", maxQueryDevice)
	}
	users := []id.UserID{user}
	for u := range signed {
		if u != user {
			users = append(users, u)
		}
	}
	csks, err := s.db.CrossSigningKeys(ctx, users)
	if err != nil {
		return nil, err
	}
	var sigs []store.Signature
	var signedDevices []id.DeviceID
	var ownMaster bool
	var others []id.UserID

	// Own keys: devices signed by the self-signing key, the master key
	// signed by devices.
	if own := signed[user]; len(own) > 0 {
		devs, err := s.db.DeviceKeysOf(ctx, user, "", nil)
		if err != nil {
			return nil, err
		}
		devKeys := map[string][]byte{}
		for _, d := range devs {
			devKeys[string(d.DeviceID)] = d.JSON
		}
		master, hasMaster := csks[user][store.MasterKey]
		ssk, hasSSK := csks[user][store.SelfSigningKey]
		for keyID, raw := range own {
			canon, err := canonicalObject(raw, "signed key")
			if err != nil {
				fail(user, keyID, failure("M_BAD_JSON", "%v", err))
				continue
			}
			theirs := signaturesBy(canon, user)
			if len(theirs) == 0 {
				fail(user, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature: none by %s", user))
				continue
			}
			if hasMaster && keyID == master.KeyID {
				if !sameKey(canon, master.JSON) {
					fail(user, keyID, failure("M_INVALID_SIGNATURE", "Key does not match the stored master key"))
					continue
				}
				stored := signaturesBy(master.JSON, user)
				var add []store.Signature
				ok := true
				for sk, sig := range theirs {
					if _, dup := stored[sk]; dup {
						continue
					}
					dev, isEd := strings.CutPrefix(sk, "ed25519:")
					dk, known := devKeys[dev]
					if !isEd || !known {
						ok = false
						break
					}
					pub, err := deviceSigningKey(dk, dev)
					if err != nil || keys.VerifyJSON(canon, string(user), id.KeyID(sk), pub) != nil {
						ok = false
						break
					}
					add = append(add, store.Signature{TargetUser: user, TargetKey: keyID, SignerUser: user, SignerKey: sk, Signature: sig})
				}
				if !ok {
					fail(user, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature"))
					continue
				}
				if len(add) > 0 {
					sigs = append(sigs, add...)
					ownMaster = true
				}
				continue
			}
			if !hasSSK {
				fail(user, keyID, failure("M_NOT_FOUND", "No self-signing key"))
				continue
			}
			dk, known := devKeys[keyID]
			if !known {
				fail(user, keyID, failure("M_NOT_FOUND", "Unknown device"))
				continue
			}
			sk := "ed25519:" + ssk.KeyID
			sig, ok := theirs[sk]
			if !ok {
				fail(user, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature: none by the self-signing key"))
				continue
			}
			if !sameKey(canon, dk) {
				fail(user, keyID, failure("M_INVALID_SIGNATURE", "Key does not match the stored device keys"))
				continue
			}
			pub, err := ed25519Key(ssk.KeyID)
			if err != nil || keys.VerifyJSON(canon, string(user), id.KeyID(sk), pub) != nil {
				fail(user, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature"))
				continue
			}
			sigs = append(sigs, store.Signature{TargetUser: user, TargetKey: keyID, SignerUser: user, SignerKey: sk, Signature: sig})
			signedDevices = append(signedDevices, id.DeviceID(keyID))
		}
	}

	// Other users' master keys, signed by the user-signing key.
	usk, hasUSK := csks[user][store.UserSigningKey]
	for target, m := range signed {
		if target == user {
			continue
		}
		if !hasUSK {
			for keyID := range m {
				fail(target, keyID, failure("M_NOT_FOUND", "No user-signing key"))
			}
			continue
		}
		masterJSON, masterID, err := s.masterKeyOf(ctx, target, csks)
		if err != nil {
			return nil, err
		}
		for keyID, raw := range m {
			if masterJSON == nil || keyID != masterID {
				fail(target, keyID, failure("M_NOT_FOUND", "Unknown device"))
				continue
			}
			canon, err := canonicalObject(raw, "signed key")
			if err != nil {
				fail(target, keyID, failure("M_BAD_JSON", "%v", err))
				continue
			}
			sk := "ed25519:" + usk.KeyID
			sig, ok := signaturesBy(canon, user)[sk]
			if !ok {
				fail(target, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature: none by the user-signing key"))
				continue
			}
			if !sameKey(canon, masterJSON) {
				fail(target, keyID, failure("M_INVALID_SIGNATURE", "Key does not match the master key"))
				continue
			}
			pub, err := ed25519Key(usk.KeyID)
			if err != nil || keys.VerifyJSON(canon, string(user), id.KeyID(sk), pub) != nil {
				fail(target, keyID, failure("M_INVALID_SIGNATURE", "Invalid signature"))
				continue
			}
			sigs = append(sigs, store.Signature{TargetUser: target, TargetKey: keyID, SignerUser: user, SignerKey: sk, Signature: sig})
			others = append(others, target)
		}
	}
	if len(sigs) == 0 {
		return failures, nil
	}

	// Store; signed devices are device list changes (sent to other
	// servers), the master key's signatures a change of user for its own
	// devices, and the signatures on others private to user.
	if len(signedDevices) > 0 {
		err = s.changeDevices(ctx, user, func(tx *store.Tx) ([]id.DeviceID, bool, error) {
			return signedDevices, false, tx.AddSignatures(ctx, sigs)
		})
	} else {
		err = s.db.WithTx(ctx, "e2ee_signatures_upload", func(tx *store.Tx) error { return tx.AddSignatures(ctx, sigs) })
	}
	if err != nil {
		return nil, err
	}
	if ownMaster && len(signedDevices) == 0 {
		if err := s.markChanged(ctx, user, user); err != nil {
			return nil, err
		}
	}
	if len(others) > 0 {
		if err := s.markChanged(ctx, user, others...); err != nil {
			return nil, err
		}
	}
	return failures, nil
}

// masterKeyOf returns the master key of a user and its ID (nil if none is
// known): stored, or for a user of another server asked of its server.
func (s *Service) masterKeyOf(ctx context.Context, u id.UserID, csks map[id.UserID]map[string]store.CrossSigningKey) ([]byte, string, error) {
	if k, ok := csks[u][store.MasterKey]; ok {
		return k.JSON, k.KeyID, nil
	}
	if s.isLocal(u) {
		return nil, "", nil
	}
	var q QueryResponse
	initQueryResponse(&q)
	rctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	s.queryRemote(rctx, map[id.UserID][]id.DeviceID{u: {}}, &q)
	cancel()
	raw, ok := q.MasterKeys[u]
	if !ok {
		return nil, "", nil
	}
	k, err := parseCrossSigningKey(raw, u, store.MasterKey)
	if err != nil {
		return nil, "", nil
	}
	return k.canon, k.name, nil
}

// deviceSigningKey returns the ed25519 key of a device_keys object.
func deviceSigningKey(canon []byte, device string) (ed25519.PublicKey, error) {
	var h deviceKeysHead
	if err := json.Unmarshal(canon, &h); err != nil {
		return nil, err
	}
	return ed25519Key(h.Keys["ed25519:"+device])
}
