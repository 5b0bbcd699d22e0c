package federation

import "time"

// QueueBackoff is the backoff of q after the given number of failures,
// before jitter.
func QueueBackoff(q *Queue, failures int) time.Duration { return q.backoff(failures) }
