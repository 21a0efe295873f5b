package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main is the benchcompare program: it parses the flags, runs the harness
// and prints the report on standard output (progress goes to standard
// error). It exits non-zero if a run failed, never because a target was not
// met: the numbers are for people to read.
func Main() {
	MaybeChild()

	fs := flag.NewFlagSet("benchcompare", flag.ExitOnError)
	records := fs.Int("records", 500_000, "records per consume, produce-batch and produce-async run")
	syncRecords := fs.Int("sync-records", 20_000, "records per produce-sync run (one round trip each, so fewer)")
	scaleRecords := fs.Int("scale-records", defaultScaleRecords, "records per share-scale run (one partition, 1 ms of work per record)")
	transformRecords := fs.Int("transform-records", 100_000, "records per transform and transform-eos run (kstream-send waits a round trip per record)")
	sizes := fs.String("size", "100", "value size in bytes; a comma-separated list runs each size in turn")
	partitions := fs.Int("partitions", 6, "partitions of every topic")
	rounds := fs.Int("rounds", 5, "measured rounds; each round runs every client once, in an order rotated every two rounds and reversed in odd ones")
	batch := fs.Int("batch", 1000, "records per call in produce-batch and produce-async")
	only := fs.String("only", "", "comma-separated scenarios ("+strings.Join(Scenarios, ", ")+"), clients (franz-go, franz-go-last, kstream-records, kstream-handle, kstream-send, kstream-producer, kstream-emit, kstream-eos, kafka-go, sarama, kcat, franz-go-count, kstream-records-nogroup, kstream-handle-nogroup, kcat-nogroup) or scenario/client; franz-go, the baseline, is always run")
	quick := fs.Bool("quick", false, "CI smoke run: 20000 records, 2000 sync records, 5000 transform records, 3 rounds (unless set explicitly)")
	brokers := fs.String("brokers", "", "comma-separated brokers of an existing cluster (also KAFKA_BROKERS); default: start a kfake broker in a child process")
	numBrokers := fs.Int("num-brokers", 1, "brokers of the kfake cluster the harness starts")
	timeout := fs.Duration("timeout", 3*time.Minute, "limit of one client run")
	warmup := fs.Bool("warmup", true, "run the franz-go baseline once, unmeasured, before each scenario")
	idempotent := fs.Bool("idempotent", true, "franz-go and kstream producers write idempotently (franz-go's default; kafka-go cannot, sarama does not by default)")
	fetchMax := fs.Int("fetch-max-bytes", 0, "kgo.FetchMaxBytes of the kstream consumers (through ClientOptions); 0: kstream's default")
	fetchPart := fs.Int("fetch-max-partition-bytes", 0, "kgo.FetchMaxPartitionBytes of the kstream consumers; 0: kstream's default")
	engineLinger := fs.Duration("engine-linger", 0, "kgo.ProducerLinger of the kstream engines' producers (through ClientOptions); 0: the engine's default, no linger")
	profile := fs.String("profile", "", "directory: every client run writes a CPU profile of its measured window and an allocation profile there (<scenario>-<size>B-<client>-r<round>.{cpu,allocs}.pprof; round 0 is the warm-up)")
	_ = fs.Parse(os.Args[1:])

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["records"] {
			*records = 20_000
		}
		if !set["sync-records"] {
			*syncRecords = 2_000
		}
		if !set["scale-records"] {
			*scaleRecords = 500
		}
		if !set["transform-records"] {
			*transformRecords = 5_000
		}
		if !set["rounds"] {
			*rounds = 3
		}
	}
	cfg := Config{
		Records:          *records,
		SyncRecords:      *syncRecords,
		ScaleRecords:     *scaleRecords,
		TransformRecords: *transformRecords,
		Partitions:       *partitions,
		Rounds:           *rounds,
		Batch:            *batch,
		NumBrokers:       *numBrokers,
		Timeout:          *timeout,
		Warmup:           *warmup,

		NotIdempotent: !*idempotent,

		FetchMaxBytes:          int32(*fetchMax),
		FetchMaxPartitionBytes: int32(*fetchPart),
		EngineLinger:           *engineLinger,
		Log:                    os.Stderr,
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "benchcompare: bad -size %q\n", s)
			os.Exit(2)
		}
		cfg.Sizes = append(cfg.Sizes, n)
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if *profile != "" {
		dir, err := filepath.Abs(*profile)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchcompare: -profile:", err)
			os.Exit(2)
		}
		os.Setenv(envProfile, dir) // the children inherit it
	}
	if *brokers != "" {
		cfg.Brokers = strings.Split(*brokers, ",")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if rep != nil {
		fmt.Printf("Command: benchcompare %s\n\n", strings.Join(os.Args[1:], " "))
		rep.WriteMarkdown(os.Stdout)
		fmt.Printf("Total time: %v.\n", time.Since(start).Round(time.Second))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
	for _, t := range rep.Tables {
		for _, r := range t.Rows {
			if r.Failed > 0 {
				os.Exit(1)
			}
		}
	}
}
