package eventauth

// Hooks for the black-box tests.
var (
	Member     = member
	ParseLevel = parseLevel
)
