package kstream_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/gokstreams/kstreams/kstream"
)

// On a share stream a record's Accept waits for the acknowledgement of what
// was emitted for it: a record whose emit failed is released, delivered
// again (DeliveryCount 2) and emits again, so every input has its output.
func TestShareEmitAcceptFollowsAcknowledgement(t *testing.T) {
	const n = 10
	e := newEnv(t, 1, n)
	out := e.topic + "-out"
	if err := e.c.CreateTopic(e.ctx, out, 1); err != nil {
		t.Fatal(err)
	}
	fault := e.c.FailProduce(t, out, kerr.InvalidRecord, 1)
	s := e.shareStream("g")
	var emitErrs int
	redelivered := map[string]int32{}
	done := map[string]bool{}
	err := opened(e.ctx, s, func(ctx context.Context) error {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for rec, err := range s.Records(lctx) {
			var ee *kstream.EmitError
			if errors.As(err, &ee) {
				emitErrs++
				delete(done, fmt.Sprintf("v%d", ee.Offset)) // to be handled again
				continue
			}
			if err != nil {
				return err
			}
			if rec.DeliveryCount > 1 {
				redelivered[rec.Value] = rec.DeliveryCount
			}
			if err := s.Emit(lctx, out, []byte("out-"+rec.Value)); err != nil {
				return err
			}
			done[rec.Value] = true
			if len(done) == n && emitErrs > 0 && len(redelivered) > 0 {
				cancel()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fault.Hits() == 0 || emitErrs == 0 || len(redelivered) == 0 {
		t.Fatalf("fault hits %d, emit errors %d, redelivered %v: want the failed emits' sources delivered again", fault.Hits(), emitErrs, redelivered)
	}
	wantEach(t, e.outputs(out, false), n, false)
}
