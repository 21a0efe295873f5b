// Opening a share stream: the group's share.auto.offset.reset, and the
// metrics of acknowledgements.

package kstream

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareResetConfig is the group config that says where a share group
// starts reading a partition it has not read yet. Kafka's default is
// "latest".
const shareResetConfig = "share.auto.offset.reset"

// shareResetTimeout bounds setting it at Open.
const shareResetTimeout = 10 * time.Second

// setShareReset makes the group's share.auto.offset.reset say what
// ResetOffset says (earliest by default, as for consumer groups): it sets
// it when the group has no value of its own, or when ResetOffset was given
// and the group's value differs. A value set on the group otherwise stays,
// with a warning when it differs. It never fails Open: when the config
// cannot be read or set (no permission to alter group configs, an older
// broker), it logs a warning saying what the group will do. opts connect a
// client of its own, without a group: the member must not join before the
// config is set.
func (ss *session) setShareReset(ctx context.Context, cfg *config, opts []kgo.Opt) {
	want := cfg.reset.String()
	warn := func(err error) {
		ss.log.Warn("cannot set the share group's "+shareResetConfig+"; the group keeps its own value (Kafka's default is latest: records produced before the group first reads a partition are then never delivered)",
			"want", want, "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, shareResetTimeout)
	defer cancel()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		warn(err)
		return
	}
	defer cl.Close()

	dreq := kmsg.NewPtrDescribeConfigsRequest()
	dres := kmsg.NewDescribeConfigsRequestResource()
	dres.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	dres.ResourceName = cfg.shareGroup
	dres.ConfigNames = []string{shareResetConfig}
	dreq.Resources = append(dreq.Resources, dres)
	current, explicit := "", false
	dresp, err := dreq.RequestWith(ctx, cl)
	if err == nil && len(dresp.Resources) == 1 {
		r := dresp.Resources[0]
		if err = kerr.ErrorForCode(r.ErrorCode); err == nil {
			for _, c := range r.Configs {
				if c.Name == shareResetConfig && c.Value != nil {
					current = *c.Value
					explicit = c.Source == kmsg.ConfigSourceGroupConfig
				}
			}
		}
	}
	if err != nil {
		// Describing may be forbidden where altering is not: try to set.
		ss.log.Debug("cannot read the share group's "+shareResetConfig, "err", err)
	}
	switch {
	case explicit && current == want:
		return
	case explicit && !cfg.isSet("ResetOffset"):
		ss.log.Warn("the share group's "+shareResetConfig+" is set to another value than the stream's default; the group's value applies (give ResetOffset to override it)",
			"group_value", current, "stream_default", want)
		return
	}

	areq := kmsg.NewPtrIncrementalAlterConfigsRequest()
	ares := kmsg.NewIncrementalAlterConfigsRequestResource()
	ares.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	ares.ResourceName = cfg.shareGroup
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name = shareResetConfig
	c.Op = kmsg.IncrementalAlterConfigOpSet
	c.Value = kmsg.StringPtr(want)
	ares.Configs = append(ares.Configs, c)
	areq.Resources = append(areq.Resources, ares)
	aresp, err := areq.RequestWith(ctx, cl)
	if err == nil {
		if len(aresp.Resources) != 1 {
			err = fmt.Errorf("the broker answered for %d resources, not 1", len(aresp.Resources))
		} else if r := aresp.Resources[0]; r.ErrorCode != 0 {
			err = kerr.ErrorForCode(r.ErrorCode)
			if r.ErrorMessage != nil {
				err = fmt.Errorf("%w: %s", err, *r.ErrorMessage)
			}
		}
	}
	if err != nil {
		warn(err)
		return
	}
	ss.log.Info("set the share group's "+shareResetConfig, "value", want, "was", current)
}

// shareMetrics returns the counters of a share stream's acknowledgements
// (by AckStatus-1) and the histogram of its records' delivery counts, or
// zero values without metrics.
func (m *metricsSet) shareMetrics(stream string) (acks [3]prometheus.Counter, deliveries prometheus.Observer) {
	if m == nil {
		return acks, nil
	}
	for i, st := range []AckStatus{AckAccept, AckRelease, AckReject} {
		acks[i] = m.shareAcks.WithLabelValues(stream, st.String())
	}
	return acks, m.deliveryCount.WithLabelValues(stream)
}

// newShareMetrics makes the share group metrics of a registry.
func newShareMetrics() (acks *prometheus.CounterVec, deliveries *prometheus.HistogramVec) {
	acks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "kstreams", Name: "share_acks_total",
		Help: "Records of a share group stream acknowledged, by status: accept, release, reject.",
	}, []string{"stream", "status"})
	deliveries = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "kstreams", Name: "share_delivery_count",
		Help:    "The delivery count of each record a share group stream fetched (1 on its first delivery).",
		Buckets: []float64{1, 2, 3, 4, 5, 7, 10},
	}, []string{"stream"})
	return acks, deliveries
}
