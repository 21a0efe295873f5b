package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Machine describes where the harness ran.
func Machine() string {
	var b strings.Builder
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := "?"
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				break
			}
		}
		f.Close()
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	fmt.Fprintf(&b, "%d CPUs (%s), %s RAM, Linux %s, %s %s/%s, GOMAXPROCS %d",
		runtime.NumCPU(), model, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	return b.String()
}

// Versions lists the client libraries built into this binary.
func Versions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var out []string
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/twmb/franz-go", "github.com/twmb/franz-go/pkg/kfake",
			"github.com/segmentio/kafka-go", "github.com/IBM/sarama":
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Version
			}
			out = append(out, d.Path+" "+v)
		}
	}
	return strings.Join(out, ", ")
}

var scenarioTitle = map[string]string{
	scenarioConsume:      "Consume",
	scenarioShare:        "Consume as one member of a share group (KIP-932), accepting each record",
	scenarioShareScale:   "Share group on one partition, 1 ms of work per record: one member against four",
	scenarioProduceSync:  "Produce, one record per call, waiting for its ack",
	scenarioProduceBatch: "Produce in batches, waiting for each batch's acks",
	scenarioProduceAsync: "Produce pipelined, waiting once at the end",
	scenarioTransform:    "Consume, transform, produce (at-least-once: a record committed once its output is acknowledged)",
	scenarioTransformEOS: "Consume, transform, produce in transactions every 100 ms (exactly-once)",
}

// WriteMarkdown writes the report's tables and the verdicts on the targets.
func (r *Report) WriteMarkdown(w io.Writer) {
	where := "a kfake broker in a child process of the harness"
	if r.External {
		where = "the cluster at " + strings.Join(r.Brokers, ",")
	}
	idem := "franz-go and kstream producers write idempotently (franz-go's default)"
	if r.Config.NotIdempotent {
		idem = "franz-go and kstream producers write without idempotence (-idempotent=false)"
	}
	fmt.Fprintf(w, "Machine: %s.\n\nLibraries: %s.\n\nCluster: %s. Every client run is a child process of its own. %s.\n\n",
		Machine(), Versions(), where, idem)
	explained := map[string]bool{}
	for _, t := range r.Tables {
		t.writeMarkdown(w, !explained[t.Scenario])
		explained[t.Scenario] = true
	}
	if v := r.Verdicts(); len(v) > 0 {
		fmt.Fprintf(w, "### Targets\n\n")
		for _, l := range v {
			fmt.Fprintf(w, "- %s\n", l)
		}
		fmt.Fprintln(w)
	}
}

func (t Table) writeMarkdown(w io.Writer, legend bool) {
	fmt.Fprintf(w, "### %s (%s): %d records of %d B, %d partitions", scenarioTitle[t.Scenario], t.Scenario, t.Records, t.Size, t.Partitions)
	if t.Scenario == scenarioProduceBatch || t.Scenario == scenarioProduceAsync {
		fmt.Fprintf(w, ", batches of %d", t.Batch)
	}
	fmt.Fprintf(w, ", median of %d rounds\n\n", t.Rounds)
	consume := isConsume(t.Scenario)
	fmt.Fprintf(w, "| client | records/s | MB/s | × franz-go (min–max) |")
	if consume {
		fmt.Fprintf(w, " steady records/s | steady × franz-go |")
	}
	fmt.Fprintf(w, " CPU s / 1M rec | broker CPU s / 1M rec | allocs / rec | B alloc / rec | peak RSS MiB | peak heap MiB | runs ok |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|")
	if consume {
		fmt.Fprintf(w, "---:|---:|")
	}
	fmt.Fprintf(w, "---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range t.Rows {
		name := r.Name
		if r.ID == t.Baseline || r.ID == r.Ref {
			name += " (baseline)"
		}
		ok := r.Runs - r.Failed
		if ok == 0 {
			fmt.Fprintf(w, "| %s | failed |  |  |", name)
			if consume {
				fmt.Fprintf(w, "  |  |")
			}
			fmt.Fprintf(w, "  |  |  |  |  |  | 0/%d |\n", r.Runs)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f | %.1f | %.2f (%.2f–%.2f) |", name, r.RecPerSec, r.MBPerSec, r.Ratio, r.RatioMin, r.RatioMax)
		if consume {
			fmt.Fprintf(w, " %.0f | %.2f |", r.SteadyRecPerSec, r.SteadyRatio)
		}
		bcpu := "–"
		if r.BrokerCPUPerM >= 0 {
			bcpu = fmt.Sprintf("%.2f", r.BrokerCPUPerM)
		}
		allocs, allocB, heap := fmt.Sprintf("%.2f", r.AllocsPerRec), fmt.Sprintf("%.0f", r.AllocBytesRec), fmt.Sprintf("%.1f", r.HeapMiB)
		if r.External {
			allocs, allocB, heap = "–", "–", "–"
		}
		fmt.Fprintf(w, " %.2f | %s | %s | %s | %.1f | %s | %d/%d |\n", r.CPUPerM, bcpu, allocs, allocB, r.RSSMiB, heap, ok, r.Runs)
	}
	fmt.Fprintln(w)
	for _, r := range t.Rows {
		if r.Ref != t.Baseline && r.ID == r.Ref {
			fmt.Fprintf(w, "The rows from %s on read without a group: their × is to it, not to the group baseline.\n\n", r.Name)
			break
		}
	}
	for _, n := range t.Notes {
		fmt.Fprintf(w, "%s.\n\n", n)
	}
	if legend {
		for _, r := range t.Rows {
			fmt.Fprintf(w, "- %s: %s.\n", r.Name, r.How)
		}
		fmt.Fprintln(w)
	}
	var errs []string
	for _, r := range t.Rows {
		for _, e := range r.Errors {
			errs = append(errs, fmt.Sprintf("%s: %s", r.Name, e))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "Failed runs:\n\n")
		for _, e := range errs {
			fmt.Fprintf(w, "- %s\n", e)
		}
		fmt.Fprintln(w)
	}
}

// Verdicts checks the targets: kstream Records at least 0.9× raw franz-go
// on consume, and every kstream client faster than kafka-go and sarama in
// its scenario (by median records/s).
func (r *Report) Verdicts() []string {
	var out []string
	for _, t := range r.Tables {
		rows := map[string]Row{}
		for _, row := range t.Rows {
			if row.Runs > row.Failed {
				rows[row.ID] = row
			}
		}
		at := fmt.Sprintf("%s, %d B", t.Scenario, t.Size)
		if b, ok := rows[t.Baseline]; ok && isConsume(t.Scenario) {
			var walls []float64
			for _, w := range b.WallNS {
				if w > 0 {
					walls = append(walls, float64(w))
				}
			}
			if m := median(walls); m < float64(100*time.Millisecond) {
				out = append(out, fmt.Sprintf("%s: a consume run took %.0f ms, mostly connecting and joining the group: too short to judge the targets; use more -records",
					at, m/float64(time.Millisecond)))
			}
		}
		if t.Scenario == scenarioShareScale {
			one, ok1 := rows["kstream-share-1"]
			four, ok4 := rows["kstream-share-4"]
			if ok1 && ok4 && one.RecPerSec > 0 {
				r := four.RecPerSec / one.RecPerSec
				out = append(out, fmt.Sprintf("%s: kstream share, 4 members / 1 member on one partition = %.2f, target ≥ 3: %s", at, r, met(r >= 3)))
			}
		}
		if t.Scenario == scenarioShare {
			if k, ok := rows["kstream-share-records"]; ok {
				out = append(out, fmt.Sprintf("%s: kstream share Records / franz-go share consumer = %.2f (steady %.2f), target ≥ 0.90: %s", at, k.Ratio, k.SteadyRatio, met(k.Ratio >= 0.9)))
			}
		}
		if t.Scenario == scenarioConsume {
			out = append(out, consumeVerdicts(at, rows)...)
		}
		if t.Scenario == scenarioProduceBatch || t.Scenario == scenarioProduceAsync {
			out = append(out, produceVerdicts(at, t.Baseline, rows)...)
		}
		out = append(out, transformVerdicts(at, t.Scenario, rows)...)
		for _, kid := range []string{"kstream-records", "kstream-handle", "kstream-send", "kstream-producer"} {
			k, ok := rows[kid]
			if !ok {
				continue
			}
			for _, pid := range []string{"kafka-go", "sarama"} {
				p, ok := rows[pid]
				if !ok {
					continue
				}
				verdict := "faster"
				if k.RecPerSec <= p.RecPerSec {
					verdict = "NOT faster"
				}
				out = append(out, fmt.Sprintf("%s: %s %.0f rec/s vs %s %.0f rec/s (%.2f×): %s", at, k.Name, k.RecPerSec, p.Name, p.RecPerSec, k.RecPerSec/p.RecPerSec, verdict))
			}
		}
		for _, row := range t.Rows {
			if row.Runs == row.Failed {
				out = append(out, fmt.Sprintf("%s: %s failed every run: %s", at, row.Name, strings.Join(row.Errors, "; ")))
			}
		}
	}
	return out
}

// transformVerdicts checks the targets of the transform scenarios:
// ExactlyOnce Records+Emit at least 0.9x the hand-written
// GroupTransactSession loop; the default-mode Emit pipeline at least 0.9x
// the hand-written produce-then-mark-on-ack loop and at least 20x a body
// that Sends synchronously. The ratios are per round, on the same data.
func transformVerdicts(at, scenario string, rows map[string]Row) []string {
	var out []string
	check := func(what string, a, b Row, target float64) {
		rs := roundRatios(b.WallNS, a.WallNS)
		r := median(rs)
		out = append(out, fmt.Sprintf("%s: %s / %s = %.2f%s (peak RSS %.1f vs %.1f MiB), target ≥ %.2f: %s",
			at, a.Name, what, r, ciText(rs), a.RSSMiB, b.RSSMiB, target, verdict(rs, target)))
	}
	base, ok := rows[baselineID]
	switch scenario {
	case scenarioTransformEOS:
		if k, ok2 := rows["kstream-eos"]; ok && ok2 {
			check(base.Name, k, base, 0.9)
		}
	case scenarioTransform:
		k, ok2 := rows["kstream-emit"]
		if ok && ok2 {
			check(base.Name, k, base, 0.9)
		}
		if s, ok3 := rows["kstream-send"]; ok2 && ok3 {
			check(s.Name, k, s, 20)
		}
	}
	return out
}

// consumeVerdicts checks the consumer targets: Records and a serial Handle
// at least 0.95× the lean franz-go loops (marking each partition's last
// record per poll with a group; counting without one), by the median of the
// per-round ratios; and kstream's peak RSS no higher than kcat's.
func consumeVerdicts(at string, rows map[string]Row) []string {
	var out []string
	if k, ok := rows["kstream-records"]; ok {
		out = append(out, fmt.Sprintf("%s: kstream Records / franz-go PollRecords marking every record = %.2f (steady %.2f)", at, k.Ratio, k.SteadyRatio))
	}
	pairs := []struct{ kid, ref string }{
		{"kstream-records", "franz-go-last"}, {"kstream-handle", "franz-go-last"},
		{"kstream-records-nogroup", nogroupBaselineID}, {"kstream-handle-nogroup", nogroupBaselineID},
	}
	for _, p := range pairs {
		k, ok1 := rows[p.kid]
		r, ok2 := rows[p.ref]
		if !ok1 || !ok2 {
			continue
		}
		rs := roundRatios(r.WallNS, k.WallNS)
		ratio := median(rs)
		out = append(out, fmt.Sprintf("%s: %s / %s = %.2f%s (steady %.2f), %+.0f CPU ns per record, target ≥ 0.95: %s",
			at, k.Name, r.Name, ratio, ciText(rs), median(roundRatios(r.SteadyNS, k.SteadyNS)), extraCPUNS(k, r), verdict(rs, 0.95)))
	}
	for _, p := range []struct{ kid, ref string }{{"kstream-records", "kcat"}, {"kstream-records-nogroup", "kcat-nogroup"}} {
		k, ok1 := rows[p.kid]
		r, ok2 := rows[p.ref]
		if !ok1 || !ok2 {
			continue
		}
		out = append(out, fmt.Sprintf("%s: peak RSS %s %.1f MiB vs %s %.1f MiB, target ≤: %s", at, k.Name, k.RSSMiB, r.Name, r.RSSMiB, met(k.RSSMiB <= r.RSSMiB)))
	}
	return out
}

// produceVerdicts checks the producer targets: SendBatch and SendAsync at
// least 0.95x franz-go's ProduceSync of a batch and Produce+Flush with the
// engine's producer settings (franz-go-engine), by the 95% interval of the
// median of the per-round ratios (verdict); the ratio to franz-go with its
// defaults (baseline) is given beside it.
func produceVerdicts(at, baseline string, rows map[string]Row) []string {
	b, ok := rows["franz-go-engine"]
	if !ok {
		if b, ok = rows[baseline]; !ok {
			return nil
		}
	}
	d, dok := rows[baseline]
	var out []string
	for _, kid := range []string{"kstream-send", "kstream-producer"} {
		k, ok := rows[kid]
		if !ok {
			continue
		}
		rs := roundRatios(b.WallNS, k.WallNS)
		r := median(rs)
		line := fmt.Sprintf("%s: %s / %s = %.2f%s, %+.0f CPU ns per record, target ≥ 0.95: %s",
			at, k.Name, b.Name, r, ciText(rs), extraCPUNS(k, b), verdict(rs, 0.95))
		if dok && d.ID != b.ID {
			line += fmt.Sprintf(" (against %s, franz-go's defaults: %.2f)", d.Name, k.Ratio)
		}
		out = append(out, line)
	}
	return out
}

// verdict judges per-round ratios rs against a target by the 95% interval
// of their median: MET when the interval lies at or above the target, NOT
// MET when it lies below, AT THE LINE when it includes the target. With
// too few rounds for an interval (under 6), the median alone decides.
func verdict(rs []float64, target float64) string {
	lo, hi, ok := medianCI(rs)
	switch {
	case !ok:
		return met(median(rs) >= target) + " (by the median: too few rounds for an interval)"
	case lo >= target:
		return "MET"
	case hi < target:
		return "NOT MET"
	}
	return "AT THE LINE (the interval includes the target)"
}

// met is a verdict on a target.
func met(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

// extraCPUNS is the CPU k takes per record beyond ref's, in ns (the rows
// give CPU seconds per million records).
func extraCPUNS(k, ref Row) float64 { return (k.CPUPerM - ref.CPUPerM) * 1000 }
