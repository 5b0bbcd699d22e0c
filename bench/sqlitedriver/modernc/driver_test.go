package main

import (
	"testing"

	"polder.dev/polder/bench/sqlitedriver/suite"
)

func TestMain(m *testing.M) { suite.Main(m, drv) }

func TestDriver(t *testing.T) { suite.Correctness(t, drv) }

func BenchmarkDriver(b *testing.B) { suite.Benchmarks(b, drv) }
