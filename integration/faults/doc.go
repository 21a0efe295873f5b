// Package faults holds the SDK's fault and bad-input scenarios: a stream
// runs against the in-process cluster while kstreamtest's levers make the
// broker fail fetches, commits, heartbeats and produce requests, hang,
// restart with its data on disk, or lose the topic under the stream; and
// while the topic holds records that do not decode, tombstones, huge
// values, invalid UTF-8 keys and headers with empty keys.
//
// Each scenario checks that no produced record is lost (every offset was
// handled at least once), counts duplicates, checks that the group's
// committed offsets never went backwards and never passed a record the
// stream had not handled, and measures how long shutting down took. Run
// them with
//
//	go test -race -count=1 ./integration/faults/
//
// and set FAULTS_REPORT=path to write the full results table (the latest is
// in integration/results/; docs/reliability-faults.md sums it up).
package faults
