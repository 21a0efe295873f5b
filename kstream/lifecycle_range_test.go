package kstream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

// Tests of item 10 of the core contract issue: a range over a stream that
// was never opened opens it and closes it at the end of the loop; the
// final commit's error was only logged, so a plain loop could not learn
// that what it processed would come again.

func TestLifecycleUnopenedRangeYieldsItsFinalCommitError(t *testing.T) {
	for _, how := range []string{"Records", "Batches"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, 1, 3)
			s := e.stream(kstream.Group("g"), kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour)))
			e.c.FailCommit(t, "g", kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			var errs []error
			n := 0
			handle := func(k int, err error) {
				if err != nil {
					errs = append(errs, err)
					return
				}
				if n += k; n == 3 {
					cancel() // the loop ends normally, at the next boundary
				}
			}
			if how == "Records" {
				for _, err := range s.Records(ctx) {
					handle(1, err)
				}
			} else {
				for b, err := range s.Batches(ctx, 10, 10*time.Millisecond) {
					handle(len(b), err)
				}
			}
			if n != 3 || len(errs) != 1 || !errors.Is(errs[0], kerr.GroupAuthorizationFailed) || !strings.Contains(errs[0].Error(), s.Name()) {
				t.Fatalf("the loop saw %d records and the errors %v, want 3 records, then the final commit's GROUP_AUTHORIZATION_FAILED naming the stream", n, errs)
			}
		})
	}
}

// After a break the loop body may not be called again: the error is
// logged, and nothing panics.
func TestLifecycleUnopenedRangeLogsItsFinalCommitErrorAfterBreak(t *testing.T) {
	e := newEnv(t, 1, 3)
	logs := &logRecorder{}
	s := e.stream(kstream.Group("g"), kstream.Logger(slogTo(logs)), kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour)))
	e.c.FailCommit(t, "g", kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	n := 0
	for _, err := range s.Records(e.ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	if out := logs.String(); !strings.Contains(out, "closing stream opened by its loop") || !strings.Contains(out, "GROUP_AUTHORIZATION_FAILED") {
		t.Fatalf("the final commit's error was not logged:\n%s", out)
	}
}

// A panic in the loop body goes on; the error is logged.
func TestLifecycleUnopenedRangeLogsItsFinalCommitErrorAfterPanic(t *testing.T) {
	e := newEnv(t, 1, 3)
	logs := &logRecorder{}
	s := e.stream(kstream.Group("g"), kstream.Logger(slogTo(logs)), kstream.ClientOptions(kgo.AutoCommitInterval(time.Hour)))
	e.c.FailCommit(t, "g", kerr.GroupAuthorizationFailed, kstreamtest.UntilHealed)
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		n := 0
		for _, err := range s.Records(e.ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 2 {
				panic("in the body")
			}
		}
	}()
	if recovered != "in the body" {
		t.Fatalf("recovered %v, want the body's panic", recovered)
	}
	if out := logs.String(); !strings.Contains(out, "closing stream opened by its loop") || !strings.Contains(out, "GROUP_AUTHORIZATION_FAILED") {
		t.Fatalf("the final commit's error was not logged:\n%s", out)
	}
}
