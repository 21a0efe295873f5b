package chaos

import (
	"bytes"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goroutine is one goroutine of a runtime.Stack dump.
type goroutine struct {
	id    int
	state string
	stack string
}

var goroutineHeader = regexp.MustCompile(`^goroutine (\d+) \[([^\]]*)\]:`)

// goroutines returns every goroutine of the process.
func goroutines() map[int]goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[int]goroutine)
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		m := goroutineHeader.FindSubmatch(block)
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(string(m[1]))
		out[id] = goroutine{id: id, state: string(m[2]), stack: string(block)}
	}
	return out
}

// ignorable says whether a goroutine that was not there at the baseline may
// stay: the in-process broker's own (kfake serves each connection on
// goroutines that end a moment after the client closes it, and keeps some
// for as long as it runs), and the test framework's.
func ignorable(g goroutine) bool {
	return strings.Contains(g.stack, "created by github.com/twmb/franz-go/pkg/kfake") ||
		strings.Contains(g.stack, "created by testing.(*T).Run") ||
		strings.Contains(g.stack, "created by testing.runTests")
}

// leakCheck takes a baseline of the goroutines now running; the returned
// function fails t if, within wait, goroutines started since (other than
// the broker's) have not all ended. It names them with their stacks.
func leakCheck(t testing.TB) func(wait time.Duration) {
	base := goroutines()
	return func(wait time.Duration) {
		t.Helper()
		deadline := time.Now().Add(wait)
		var leaked []goroutine
		for {
			leaked = leaked[:0]
			for id, g := range goroutines() {
				if _, ok := base[id]; !ok && !ignorable(g) {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		slices.SortFunc(leaked, func(a, b goroutine) int { return a.id - b.id })
		var b strings.Builder
		for _, g := range leaked {
			b.WriteString(g.stack)
			b.WriteString("\n\n")
		}
		t.Errorf("GOROUTINE LEAK: %d goroutine(s) started during the test still run %v after it:\n%s", len(leaked), wait, b.String())
	}
}

// summarize describes, one line per goroutine, the goroutines not in base
// that are in kstream or franz-go code: where each waits, innermost frame
// first.
func summarize(base map[int]goroutine) string {
	var lines []string
	for _, g := range goroutines() {
		if _, ok := base[g.id]; ok {
			continue
		}
		if !strings.Contains(g.stack, "gokstreams/kstreams/kstream.") && !strings.Contains(g.stack, "franz-go/pkg/kgo.") {
			continue
		}
		if strings.Contains(g.stack, "created by github.com/twmb/franz-go/pkg/kfake") {
			continue
		}
		var frames []string
		for _, line := range strings.Split(g.stack, "\n")[1:] {
			if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "created by") {
				continue
			}
			fn := line
			if i := strings.LastIndex(fn, "("); i > 0 {
				fn = fn[:i]
			}
			fn = strings.TrimPrefix(fn, "github.com/twmb/franz-go/pkg/")
			fn = strings.TrimPrefix(fn, "github.com/gokstreams/kstreams/")
			if strings.HasPrefix(fn, "kgo.") || strings.HasPrefix(fn, "kstream.") || strings.Contains(fn, "chaos.") {
				frames = append(frames, fn)
			}
			if len(frames) == 9 {
				break
			}
		}
		lines = append(lines, fmt.Sprintf("goroutine %d [%s]: %s", g.id, g.state, strings.Join(frames, " <- ")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
