package queue

import "time"

// ReplayClaim is a shared replay cache's answer to a claim on an event
// id (server.replay_cache: nats): exactly one of its fields is set.
type ReplayClaim struct {
	// Rev is the revision of this replica's claim: deliver the event,
	// then accept or release the claim.
	Rev uint64
	// Until, when not zero, is how long the id stays accepted by some
	// replica: the copy is a duplicate.
	Until time.Time
	// Pending is the revision of another replica's claim, still in
	// flight: wait for its outcome, then claim again.
	Pending uint64
}
