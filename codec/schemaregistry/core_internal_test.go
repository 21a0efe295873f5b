package schemaregistry

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// A lookup whose parsing panics gives a schema mismatch, cached as any
// final answer, and leaves nothing in flight.
func TestReaderPanicIsSchemaMismatch(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	id, _, err := reg.RegisterSchema("s", sr.Schema{Schema: `"string"`})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	c := newCore[int, int](cl, "Avro", sr.TypeAvro, "s", newConfig(nil))
	calls := 0
	c.loadReader = func(context.Context, int, sr.Schema) (int, error) {
		calls++
		panic("boom")
	}
	for range 2 {
		_, err := c.reader(context.Background(), id)
		if !errors.Is(err, ErrSchemaMismatch) {
			t.Fatalf("reader after a panic: %v", err)
		}
	}
	if calls != 1 || len(c.inflight) != 0 {
		t.Fatalf("%d loads, %d in flight: want 1 and 0", calls, len(c.inflight))
	}
}
