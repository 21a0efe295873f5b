// Command kstreams-dev runs a Kafka cluster and a schema registry on this
// machine, in one process, for development: no Docker, no JVM. Kafka is
// franz-go's kfake (the embedded cluster the SDK's tests use), listening on
// 127.0.0.1:9092 by default, the SDK's default brokers, so that a program
// with no configuration talks to it; the registry is franz-go's srfake (the
// Confluent Schema Registry REST API) on 127.0.0.1:8081, the registry's
// usual port. Any Kafka client works against it: kcat, franz-go, Java,
// librdkafka.
//
//	go run ./cmd/kstreams-dev -topic orders:6 -data ./.kstreams-dev
//	go install github.com/gokstreams/kstreams/cmd/kstreams-dev@latest
//
// It prints the addresses and runs until SIGINT (Ctrl-C) or SIGTERM, then
// stops cleanly and exits 0. With -data, the topics, records, committed
// offsets and registered schemas are kept in that folder and are there
// again at the next start; without it, everything lives in memory.
//
// Flags:
//
//	-port 9092           Kafka port of the first broker; the others take the next ones (0: free ports)
//	-brokers 1           number of brokers
//	-registry-port 8081  schema registry port (0: a free port; -1: no registry)
//	-topic name[:n]      a topic to create with n partitions (default 1); repeat for more
//	-data dir            keep the data in dir (dir/kafka, dir/schema-registry.json)
//	-auto-create=true    create a topic when a client asks for one that does not exist, as Kafka does by default
//	-v                   log the cluster's warnings and errors to stderr
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/gokstreams/kstreams/internal/srserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, stop, os.Args[1:], os.Stdout, os.Stderr))
}

type topicFlag struct {
	name       string
	partitions int32
}

type config struct {
	port, brokers, registryPort int
	topics                      []topicFlag
	data                        string
	autoCreate, verbose         bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("kstreams-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.port, "port", 9092, "Kafka port of the first broker; the others take the next ports (0: free ports)")
	fs.IntVar(&c.brokers, "brokers", 1, "number of brokers")
	fs.IntVar(&c.registryPort, "registry-port", 8081, "schema registry port (0: a free port; -1: no registry)")
	fs.Func("topic", "a topic to create, `name[:partitions]` (1 partition by default); repeat for more", func(s string) error {
		name, parts, found := strings.Cut(s, ":")
		t := topicFlag{name: name, partitions: 1}
		if name == "" {
			return errors.New("empty topic name")
		}
		if found {
			n, err := strconv.ParseInt(parts, 10, 32)
			if err != nil || n < 1 {
				return fmt.Errorf("partitions of %q: want a number of 1 or more, got %q", name, parts)
			}
			t.partitions = int32(n)
		}
		c.topics = append(c.topics, t)
		return nil
	})
	fs.StringVar(&c.data, "data", "", "keep topics, records, offsets and schemas in this folder across restarts (default: in memory)")
	fs.BoolVar(&c.autoCreate, "auto-create", true, "create a topic when a client asks for one that does not exist")
	fs.BoolVar(&c.verbose, "v", false, "log the cluster's warnings and errors to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.brokers < 1:
		return c, fmt.Errorf("-brokers %d: want 1 or more", c.brokers)
	case c.port < 0 || c.port+c.brokers-1 > 65535:
		return c, fmt.Errorf("-port %d: want a port for each of %d broker(s)", c.port, c.brokers)
	case c.registryPort < -1 || c.registryPort > 65535:
		return c, fmt.Errorf("-registry-port %d: want a port, 0 or -1", c.registryPort)
	}
	return c, nil
}

// run runs the cluster until ctx ends, and returns the exit status. It
// calls stopSignals once ctx has ended, so that a second Ctrl-C kills the
// process if stopping hangs.
func run(ctx context.Context, stopSignals func(), args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kstreams-dev:", err)
		return 2
	}
	if err := serve(ctx, stopSignals, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "kstreams-dev:", err)
		return 1
	}
	fmt.Fprintln(stdout, "stopped")
	return 0
}

func serve(ctx context.Context, stopSignals func(), cfg config, stdout, stderr io.Writer) (err error) {
	opts := []kfake.Opt{kfake.NumBrokers(cfg.brokers)}
	if cfg.port != 0 {
		ports := make([]int, cfg.brokers)
		for i := range ports {
			ports[i] = cfg.port + i
		}
		opts = append(opts, kfake.Ports(ports...))
	}
	if cfg.autoCreate {
		opts = append(opts, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1))
	}
	if cfg.verbose {
		opts = append(opts, kfake.WithLogger(kfake.BasicLogger(stderr, kfake.LogLevelWarn)))
	}
	var registryFile string
	if cfg.data != "" {
		abs, err := filepath.Abs(cfg.data)
		if err != nil {
			return err
		}
		cfg.data = abs
		opts = append(opts, kfake.DataDir(filepath.Join(abs, "kafka")))
		registryFile = filepath.Join(abs, "schema-registry.json")
	}

	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start Kafka: %w", err)
	}
	defer func() {
		// kfake writes its state to the data folder as it closes.
		cluster.Close()
	}()
	var registry *srserver.Server
	if cfg.registryPort >= 0 {
		registry, err = srserver.Start(fmt.Sprintf("127.0.0.1:%d", cfg.registryPort), registryFile)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := registry.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	brokers := cluster.ListenAddrs()
	if err := createTopics(ctx, brokers, cfg.topics, stderr); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "kafka: %s\n", strings.Join(brokers, ","))
	env := "KAFKA_BROKERS=" + strings.Join(brokers, ",")
	if registry != nil {
		fmt.Fprintf(stdout, "schema registry: %s\n", registry.URL())
		env += " SCHEMA_REGISTRY_URL=" + registry.URL()
	}
	if cfg.data != "" {
		fmt.Fprintf(stdout, "data: %s\n", cfg.data)
	} else {
		fmt.Fprintln(stdout, "data: in memory (use -data to keep it)")
	}
	for _, t := range cfg.topics {
		fmt.Fprintf(stdout, "topic: %s (%d partitions)\n", t.name, t.partitions)
	}
	fmt.Fprintf(stdout, "export %s\n", env)
	fmt.Fprintln(stdout, "ready; Ctrl-C stops")

	<-ctx.Done()
	stopSignals()
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// createTopics creates the topics of the -topic flags that do not exist;
// one that exists with another partition count is left as it is, with a
// warning.
func createTopics(ctx context.Context, brokers []string, topics []topicFlag, stderr io.Writer) error {
	if len(topics) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range topics {
		resp, err := adm.CreateTopic(ctx, t.partitions, 1, nil, t.name)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			td, derr := adm.ListTopics(ctx, t.name)
			if derr == nil {
				if n := len(td[t.name].Partitions); n != int(t.partitions) {
					fmt.Fprintf(stderr, "kstreams-dev: topic %s exists with %d partitions, not %d; left as it is\n", t.name, n, t.partitions)
				}
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t.name, err)
		}
	}
	return nil
}
