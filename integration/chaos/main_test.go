package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the helper programs, built once per test binary: the member
// and the broker. They are built without -race, whatever the test binary:
// the suite races the SDK in process (scenarios 4 to 7), and the processes
// are there for real kills, not for the race detector.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	binDir = dir
	stopWatchdog := startWatchdog()
	code := m.Run()
	stopWatchdog()
	os.RemoveAll(dir)
	if err := writeReport(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: report:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// binaries builds cmd/member and ../cmd/kfakeserver into binDir.
func binaries(t testing.TB) (member, broker string) {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gobin, "build", "-o", binDir+string(filepath.Separator), "./cmd/member", "../cmd/kfakeserver")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		t.Logf("built member and kfakeserver in %v", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "member"), filepath.Join(binDir, "kfakeserver")
}

// seed returns CHAOS_SEED, or a new seed, and logs it so that a failing run
// can be repeated.
func seed(t testing.TB) int64 {
	t.Helper()
	s := time.Now().UnixNano()
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("seed %d (repeat with CHAOS_SEED=%d)", s, s)
	return s
}

// churnDuration is how long a churn scenario churns: CHAOS_DURATION, else
// full or, with -short, short.
func churnDuration(t testing.TB, full, short time.Duration) time.Duration {
	t.Helper()
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_DURATION=%q: %v", v, err)
		}
		return d
	}
	if testing.Short() {
		return short
	}
	return full
}

// requireChaos skips a scenario unless CHAOS=1: the suite takes minutes
// and loads every core, so it runs on purpose (make chaos, make
// chaos-short), not as part of go test ./... .
func requireChaos(t testing.TB) {
	t.Helper()
	if os.Getenv("CHAOS") != "1" {
		t.Skip("chaos scenario: set CHAOS=1 to run it (make chaos; make chaos-short for the bounded subset)")
	}
	track(t.Name(), t.Cleanup)
}

// row is one line of the results table.
type row struct {
	Scenario    string
	Duration    time.Duration // churn (or load) time
	Wall        time.Duration // the whole test
	Produced    int64
	Lost        int64
	Duplicated  int64
	DupBound    int64 // records uncommitted at the kills: duplicates may not exceed it; -1 when not applicable
	MaxShutdown time.Duration
	Notes       string
	Failed      bool
}

var (
	rowsMu sync.Mutex
	rows   []row
)

// report adds r to the results table at the end of t, marking it failed if
// t failed.
func report(t testing.TB, r *row) {
	start := time.Now()
	track(t.Name(), t.Cleanup)
	t.Cleanup(func() {
		r.Wall = time.Since(start)
		r.Failed = t.Failed()
		t.Logf("result: %s", r.line())
		rowsMu.Lock()
		rows = append(rows, *r)
		rowsMu.Unlock()
	})
}

func (r row) line() string {
	return fmt.Sprintf("produced %d, lost %d, duplicated %d%s, max shutdown %v; %s",
		r.Produced, r.Lost, r.Duplicated, r.boundText(), r.MaxShutdown.Round(time.Millisecond), r.Notes)
}

func (r row) boundText() string {
	if r.DupBound < 0 {
		return ""
	}
	return fmt.Sprintf(" (bound %d)", r.DupBound)
}

func writeReport() error {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("| Scenario | Duration | Records produced | Lost | Duplicated | Max shutdown time | Notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		name := r.Scenario
		if r.Failed {
			name += " **(FAILED)**"
		}
		dup := strconv.FormatInt(r.Duplicated, 10)
		if r.DupBound >= 0 {
			dup += fmt.Sprintf(" (≤ %d uncommitted at kills)", r.DupBound)
		}
		fmt.Fprintf(&b, "| %s | %v (test %v) | %d | %d | %s | %v | %s |\n",
			name, r.Duration.Round(time.Second), r.Wall.Round(time.Second), r.Produced, r.Lost, dup,
			r.MaxShutdown.Round(time.Millisecond), r.Notes)
	}
	fmt.Fprintf(os.Stdout, "\nchaos results:\n%s", b.String())
	path := os.Getenv("CHAOS_REPORT")
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
