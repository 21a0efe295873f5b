// Package kstream consumes Kafka topics as typed Go iterators: the Go form of
// the Python library kstreams, built on franz-go.
//
// A Stream[T] decodes each record's value into a T with a codec.Decoder[T],
// and its Records method is a range-over-func iterator, so kstreams'
// "async for cr in stream" is a plain for range:
//
//	type Order struct {
//		ID     int     `json:"id"`
//		Amount float64 `json:"amount"`
//	}
//
//	orders, err := kstream.NewStream(codec.JSON[Order](),
//		kstream.Topics("orders"), kstream.Group("billing"))
//	if err != nil {
//		return err
//	}
//	return orders.Use(ctx, func(records iter.Seq2[kstream.Record[Order], error]) error {
//		for rec, err := range records {
//			if err != nil {
//				return err // a *DecodeError names the record's topic, partition and offset
//			}
//			if err := store(ctx, rec.Value); err != nil {
//				return err // rec is not committed; it is delivered again
//			}
//			// reaching the end of the body marks rec processed (at least once)
//		}
//		return nil
//	})
//
// # Commits follow loop control
//
// A record is processed when the loop body returns to the iterator for the
// next one. In the default mode, processed records are committed
// periodically, before partitions are revoked, and on Close; records that
// were polled but not processed never are. break, return and panic leave the
// record in hand unprocessed. With ManualCommit, nothing is committed unless
// the code calls Commit or CommitRecords.
//
// # Rebalances
//
// A group member's partitions change only at a record boundary: franz-go's
// rebalance is held while the loop body runs and released at the next
// boundary, with the records polled ahead of the loop given back. So a
// revoke never interrupts a record, processed records are committed before
// the partition moves, and a revoked partition's records are never yielded
// afterwards. RebalanceListener gets OnAssigned, OnRevoked and OnLost;
// MetricsRebalanceListener and ManualCommitRebalanceListener are provided.
//
// # Connecting
//
// Brokers come from the Brokers option, else the stream's engine, else the
// KAFKA_BROKERS environment variable, else localhost:9092. Any franz-go
// setting passes through ClientOptions. Package kstreamtest runs an
// in-process cluster for tests and examples.
package kstream
