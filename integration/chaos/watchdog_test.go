package chaos

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The watchdog turns a hang into a short report. go test's own timeout
// panic prints every goroutine of every client and broker first and the
// running test's name far above, where a CI log's tail does not reach; the
// watchdog fires shortly before it and prints, last, which scenario hangs,
// for how long, and the stacks of the goroutines that are in the SDK or in
// the scenario itself.

var running = struct {
	sync.Mutex
	since map[string]time.Time
}{since: make(map[string]time.Time)}

// track records t as running until its cleanup.
func track(name string, cleanup func(func())) {
	running.Lock()
	running.since[name] = time.Now()
	running.Unlock()
	cleanup(func() {
		running.Lock()
		delete(running.since, name)
		running.Unlock()
	})
}

// startWatchdog fires 20s before -test.timeout, if one is set.
func startWatchdog() (stop func()) {
	flag.Parse() // TestMain runs before m.Run parses the flags
	f := flag.Lookup("test.timeout")
	if f == nil {
		return func() {}
	}
	d, ok := f.Value.(flag.Getter).Get().(time.Duration)
	if !ok || d <= 30*time.Second {
		return func() {}
	}
	timer := time.AfterFunc(d-20*time.Second, func() {
		fmt.Fprint(os.Stderr, hangReport())
		os.Exit(3)
	})
	return func() { timer.Stop() }
}

func hangReport() string {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var b strings.Builder
	b.WriteString("\nchaos watchdog: the suite is about to hit its -timeout.\n")
	b.WriteString("goroutines in the SDK or the scenarios:\n\n")
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "gokstreams/kstreams/kstream") || strings.Contains(s, "kstreams/integration/chaos") {
			if strings.Contains(s, "hangReport") {
				continue
			}
			b.WriteString(s)
			b.WriteString("\n\n")
		}
	}
	running.Lock()
	names := make([]string, 0, len(running.since))
	for n, at := range running.since {
		names = append(names, fmt.Sprintf("%s (running for %v)", n, time.Since(at).Round(time.Second)))
	}
	running.Unlock()
	slices.Sort(names)
	fmt.Fprintf(&b, "chaos watchdog: still running: %s\n", strings.Join(names, ", "))
	return b.String()
}
