package kstreamtest_test

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gokstreams/kstreams/kstream"
)

// recorder is a testing.TB that records failures instead of failing the
// test, to prove that a helper fails when it should. Fatal stops the
// goroutine, as testing.T's does, so helpers run under check.
type recorder struct {
	testing.TB // the real test, for Cleanup, Logf and the rest

	mu     sync.Mutex
	errors []string
	fatal  string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recorder) FailNow() { r.Fatalf("FailNow") }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors) > 0 || r.fatal != ""
}

// messages returns every failure message, the fatal one last.
func (r *recorder) messages() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	msgs := append([]string(nil), r.errors...)
	if r.fatal != "" {
		msgs = append(msgs, "FATAL: "+r.fatal)
	}
	return strings.Join(msgs, "\n")
}

// check runs fn with a recorder on a goroutine of its own and returns the
// recorder once fn has returned or called Fatal.
func check(t *testing.T, fn func(tb testing.TB)) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	return r
}

// wantFailure fails t unless r recorded a failure containing every one of
// the substrings.
func wantFailure(t *testing.T, r *recorder, subs ...string) {
	t.Helper()
	msg := r.messages()
	if msg == "" {
		t.Fatalf("the helper did not fail the test; want a failure mentioning %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("failure message does not mention %q:\n%s", s, msg)
		}
	}
	t.Logf("failure message, as a user would see it:\n%s", msg)
}

// consume ranges over s on a goroutine until ctx is done, calling fn for
// each record, and returns a channel with the range's error.
func consume[T any](ctx context.Context, s *kstream.Stream[T], fn func(kstream.Record[T])) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- s.Use(ctx, func(records iter.Seq2[kstream.Record[T], error]) error {
			for rec, err := range records {
				if err != nil {
					return err
				}
				fn(rec)
			}
			return nil
		})
	}()
	return done
}
