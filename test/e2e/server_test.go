package e2e

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/logtally/logtally/internal/natstest"
)

func runServer(t *testing.T) *server.Server { return natstest.RunBasicJetStreamServer(t) }
