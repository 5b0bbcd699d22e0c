package user

import "time"

// SetClock replaces the service's clock (remote profile cache expiry).
func SetClock(s *Service, now func() time.Time) { s.now = now }
