package e2ee

import "time"

// SetRemoteBackoff sets the backoff of failed remote resyncs (tests).
func SetRemoteBackoff(s *Service, min, max time.Duration) {
	s.remote.mu.Lock()
	s.remote.minBackoff, s.remote.maxBackoff = min, max
	s.remote.mu.Unlock()
}
