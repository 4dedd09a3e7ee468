package engine

// Unexported helpers that the external tests check directly.
var (
	Owner         = owner
	ShortDuration = shortDuration
	Truncate      = truncate
	WorkloadNames = workloadNames
)
