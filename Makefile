# Polder's build.
#   make build   static binary bin/polder (no cgo, so it runs FROM scratch)
#   make image   container image $(IMAGE) from bin/polder (see Dockerfile)
#   make test    scripts/test.sh (what CI runs)
#   make complement  Complement against $(IMAGE), by hand (scripts/complement.sh)

export GOTOOLCHAIN := auto

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE   ?= polder:latest
LDFLAGS := -s -w -X polder.dev/polder/internal/server.Version=$(VERSION)

.PHONY: build image test complement clean

build:
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)' -o bin/polder ./cmd/polder

image: build
	scripts/image.sh $(IMAGE)

test:
	scripts/test.sh

complement:
	scripts/complement.sh

clean:
	rm -rf bin
