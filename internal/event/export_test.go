package event

// ComputeReferenceHash recomputes the reference hash that Parse stored, for
// benchmarks.
func ComputeReferenceHash(p *PDU) [32]byte { return referenceHash(p.rules, p.typ, p.raw) }
