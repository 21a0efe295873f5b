package kstream

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestClassifyFetchError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want fetchErrorKind
	}{
		{kgo.ErrClientClosed, errEnd},
		{kerr.TopicAuthorizationFailed, errFatal},
		{fmt.Errorf("wrapped: %w", kerr.GroupAuthorizationFailed), errFatal},
		{&kgo.ErrGroupSession{Err: kerr.GroupAuthorizationFailed}, errFatal},
		{kerr.UnsupportedVersion, errFatal},
		{kerr.UnknownTopicID, errFatal},
		{kerr.NotLeaderForPartition, errRetried},
		{&kgo.ErrGroupSession{Err: kerr.UnknownMemberID}, errRetried},
		{&kgo.ErrDataLoss{Topic: "t", Partition: 1, ConsumedTo: 10, ResetTo: 5}, errNonFatal},
		{kerr.OffsetOutOfRange, errNonFatal},
		{errors.New("something else"), errNonFatal},
	} {
		if got := classifyFetchError(tc.err); got != tc.want {
			t.Errorf("classifyFetchError(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
