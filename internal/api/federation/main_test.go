package federation_test

import (
	"os"
	"testing"

	"polder.dev/polder/internal/hstest"
)

func TestMain(m *testing.M) { os.Exit(hstest.Main(m)) }
