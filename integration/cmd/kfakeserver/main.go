// Command kfakeserver runs an in-process Kafka cluster (kfake, started with
// kstreamtest.Start) as a process of its own, prints "BROKERS host:port,..."
// on standard output and serves until interrupted or until its standard
// input ends. benchcompare starts the same server in a child process;
// kfakeserver is for running other tools, or benchcompare -brokers, against
// it by hand:
//
//	go run ./integration/cmd/kfakeserver               # until Ctrl-C or Ctrl-D
//	go run ./integration/cmd/kfakeserver -stdin=false &  # in the background, until killed
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gokstreams/kstreams/integration/internal/bench"
)

func main() {
	n := flag.Int("brokers", 1, "number of brokers")
	stdin := flag.Bool("stdin", true, "also stop when standard input ends")
	flag.Parse()

	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	eof := make(chan struct{})
	if *stdin {
		go func() {
			buf := make([]byte, 512)
			for {
				if _, err := os.Stdin.Read(buf); err != nil {
					close(eof)
					return
				}
			}
		}()
	}
	go func() {
		select {
		case <-sig:
		case <-eof:
		}
		close(stop)
	}()
	if err := bench.ServeBroker(*n, os.Stdout, stop); err != nil {
		fmt.Fprintln(os.Stderr, "kfakeserver:", err)
		os.Exit(1)
	}
}
