package kstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gokstreams/kstreams/kstream"
)

// Item 11 of the core contract issue, a data race: the settings a stream
// inherits from its engine were read without the stream's lock by the run
// loop (its error policy and metrics, after a crash) while Remove detached
// the stream after closing it under a handler that ignored its deadline.
// The race detector reports it on the code before the fix.
func TestLifecycleRemoveForcedCloseDoesNotRaceTheRunLoop(t *testing.T) {
	e := newEnv(t, 1, 1)
	eng := e.engine(kstream.OnError(kstream.ErrorPolicyRestart))
	inHandler := make(chan struct{})
	returned := make(chan struct{})
	s := e.engineStream(e.topic, "racy")
	eng.Add(s.Handle(func(context.Context, kstream.Record[string]) error {
		defer close(returned)
		close(inHandler)
		// Ignore ctx; return, failing, as soon as the stream has been
		// closed under the handler, while Remove is still at work.
		deadline := time.Now().Add(20 * time.Second)
		for len(s.Assignment()) > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return errors.New("failed after the forced close")
	}))
	if err := eng.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	ctx, cancel := context.WithTimeout(e.ctx, 100*time.Millisecond)
	defer cancel()
	if err := eng.Remove(ctx, s); err == nil {
		t.Fatal("Remove = nil, want the stream reported as not stopped")
	}
	<-returned
}
