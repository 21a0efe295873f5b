package schemaregistry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/gokstreams/kstreams/codec"
)

// core is what the three codecs share: the client, the subject, the cache
// of writer schemas by ID for decoding (R: a schema parsed and resolved
// against T's, by the format), and the schema the codec encodes with (W),
// found once.
//
// Every registry call made for a cache miss is bounded by the request
// timeout and made once for all the goroutines that need it at the same
// time. Results are cached when they are final: a schema found (or found
// not to resolve, since an ID's schema never changes); an unknown ID and an
// unavailable registry are asked again next time.
type core[R, W any] struct {
	cl      *sr.Client
	format  string
	typ     sr.SchemaType
	subject string
	cfg     config

	// loadReader parses a writer's schema (with its references) and
	// resolves it against T's. Its errors are final unless they wrap
	// codec.ErrUnavailable.
	loadReader func(ctx context.Context, id int, s sr.Schema) (R, error)

	// loadWriter builds the encoding state from the schema the codec
	// writes with: T's own when auto-registering (registered is false),
	// else the subject's version.
	loadWriter func(ctx context.Context, s sr.Schema, registered bool) (W, error)

	// ownSchema is the schema AutoRegister registers; it may register
	// the schemas it references first.
	ownSchema func(ctx context.Context) (sr.Schema, error)

	last     atomic.Pointer[entry[R]] // the entry of the last ID decoded
	mu       sync.Mutex
	byID     map[int]*entry[R]
	fifo     []int // IDs in byID, oldest first
	inflight map[int]*flight[R]

	writerMu sync.Mutex
	writer   atomic.Pointer[writerState[W]]
}

type entry[R any] struct {
	id  int
	r   R
	err error // final: the schema does not resolve
}

type flight[R any] struct {
	done chan struct{}
	r    R
	err  error
}

type writerState[W any] struct {
	id int
	w  W
}

func newCore[R, W any](cl *sr.Client, format string, typ sr.SchemaType, subject string, cfg config) *core[R, W] {
	return &core[R, W]{
		cl:       cl,
		format:   format,
		typ:      typ,
		subject:  subject,
		cfg:      cfg,
		byID:     make(map[int]*entry[R]),
		inflight: make(map[int]*flight[R]),
	}
}

// fail wraps err as the codec's *Error.
func (c *core[R, W]) fail(op string, id int, err error) error {
	return &Error{Op: op, Format: c.format, Subject: c.subject, ID: id, Err: err}
}

// reader returns the resolved writer schema with the ID, from the cache or
// the registry. ctx bounds the wait for the registry, with the request
// timeout.
func (c *core[R, W]) reader(ctx context.Context, id int) (R, error) {
	if e := c.last.Load(); e != nil && e.id == id {
		return e.r, e.err
	}
	c.mu.Lock()
	if e, ok := c.byID[id]; ok {
		c.mu.Unlock()
		c.last.Store(e)
		return e.r, e.err
	}
	if f, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.r, f.err
		case <-ctx.Done():
			var zero R
			return zero, codec.Unavailable(ctx.Err())
		}
	}
	f := &flight[R]{done: make(chan struct{})}
	c.inflight[id] = f
	c.mu.Unlock()

	func() {
		// A schema that makes a library panic is a schema that does not
		// resolve, and the goroutines waiting for this lookup must not
		// wait forever.
		defer func() {
			if r := recover(); r != nil {
				f.err = fmt.Errorf("%w: schema %d: %v", ErrSchemaMismatch, id, r)
			}
		}()
		f.r, f.err = c.fetchReader(ctx, id)
	}()
	final := f.err == nil || !(errors.Is(f.err, codec.ErrUnavailable) || errors.Is(f.err, ErrUnknownSchema))

	c.mu.Lock()
	delete(c.inflight, id)
	if final {
		e := &entry[R]{id: id, r: f.r, err: f.err}
		if len(c.fifo) >= c.cfg.cacheSize {
			delete(c.byID, c.fifo[0])
			c.fifo = slices.Delete(c.fifo, 0, 1)
		}
		c.byID[id] = e
		c.fifo = append(c.fifo, id)
		c.last.Store(e)
	}
	c.mu.Unlock()
	close(f.done)
	return f.r, f.err
}

func (c *core[R, W]) fetchReader(ctx context.Context, id int) (R, error) {
	var zero R
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	s, err := c.cl.SchemaByID(ctx, id)
	if err != nil {
		return zero, registryError(err)
	}
	if s.Type != c.typ {
		return zero, fmt.Errorf("%w: schema %d is a %s schema, this codec reads %s", ErrSchemaMismatch, id, s.Type, c.typ)
	}
	return c.loadReader(ctx, id, s)
}

// writerSchema returns the ID the codec writes and the encoding state for
// it, finding them at the first call: by registering T's schema
// (AutoRegister), else from the subject's version or latest version.
// Failures are not cached: the next Encode tries again.
func (c *core[R, W]) writerSchema() (*writerState[W], error) {
	if w := c.writer.Load(); w != nil {
		return w, nil
	}
	c.writerMu.Lock()
	defer c.writerMu.Unlock()
	if w := c.writer.Load(); w != nil {
		return w, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	var (
		id         int
		s          sr.Schema
		registered bool
	)
	if c.cfg.autoRegister {
		own, err := c.ownSchema(ctx)
		if err != nil {
			return nil, err
		}
		own.Type = c.typ
		id, err = c.cl.RegisterSchema(ctx, c.subject, own, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("register the schema: %w", registryError(err))
		}
		s = own
	} else {
		ss, err := c.subjectVersion(ctx)
		if err != nil {
			return nil, err
		}
		if ss.Type != c.typ {
			return nil, fmt.Errorf("%w: version %d of the subject is a %s schema, this codec writes %s", ErrSchemaMismatch, ss.Version, ss.Type, c.typ)
		}
		id, s, registered = ss.ID, ss.Schema, true
	}
	w, err := c.loadWriter(ctx, s, registered)
	if err != nil {
		return nil, err
	}
	ws := &writerState[W]{id: id, w: w}
	c.writer.Store(ws)
	return ws, nil
}

// subjectVersion fetches the subject's version given by Version, or its
// latest. A subject without versions is reported as unavailable: it is the
// codec's (or the deployment's) state, not any record's, and registering
// the schema mends it without a restart.
func (c *core[R, W]) subjectVersion(ctx context.Context) (sr.SubjectSchema, error) {
	v := c.cfg.version
	which := fmt.Sprintf("version %d", v)
	if v == 0 {
		v, which = -1, "latest version"
	}
	ss, err := c.cl.SchemaByVersion(ctx, c.subject, v)
	if err != nil {
		if notFound(err) {
			return ss, codec.Unavailable(fmt.Errorf("the subject has no %s (register the schema, or use AutoRegister): %w", which, err))
		}
		return ss, fmt.Errorf("fetch the subject's %s: %w", which, registryError(err))
	}
	return ss, nil
}

// references fetches the schemas a schema references, depth first (a
// referenced schema's own references before it), each once, and calls
// add for each with the name it is referenced by.
func (c *core[R, W]) references(ctx context.Context, refs []sr.SchemaReference, seen map[string]bool, add func(name string, s sr.SubjectSchema) error) error {
	for _, ref := range refs {
		key := fmt.Sprintf("%s/%d", ref.Subject, ref.Version)
		if seen[key] {
			continue
		}
		seen[key] = true
		ss, err := c.cl.SchemaByVersion(ctx, ref.Subject, ref.Version)
		if err != nil {
			if notFound(err) {
				return fmt.Errorf("%w: reference %q (subject %q version %d) is not in the registry: %w", ErrSchemaMismatch, ref.Name, ref.Subject, ref.Version, err)
			}
			return fmt.Errorf("fetch reference %q (subject %q version %d): %w", ref.Name, ref.Subject, ref.Version, registryError(err))
		}
		if err := c.references(ctx, ss.References, seen, add); err != nil {
			return err
		}
		if err := add(ref.Name, ss); err != nil {
			return err
		}
	}
	return nil
}
