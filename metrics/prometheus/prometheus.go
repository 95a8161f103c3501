// Package prometheus exports mcpauth's security events as Prometheus
// metrics:
//
//   - mcpauth_events_total{kind, outcome, method, reason}: a counter of
//     every [mcpauth.Event];
//   - mcpauth_decision_seconds{kind, outcome}: a histogram of how long
//     the decisions that were timed took ([mcpauth.Event].Latency, for
//     example the authenticators' work in [mcpauth.Require]);
//   - mcpauth_events_dropped_total: the events an [mcpauth.AsyncSink]
//     dropped, once [Sink.WatchDrops] is called.
//
// A [Sink] is an [mcpauth.EventSink]: give it as RequireOptions.Events,
// GuardOptions.Events, authserver Options.Events, with Next set to the sink
// that should also see the events (a log). Label values come from the
// events' fixed words, never from what a caller chose (subjects, tools and
// addresses are not labels), and each label keeps at most MaxValues
// distinct values, the rest counted as "other", so a series count cannot
// grow without bound.
//
// It is a package of its own so that importing mcpauth does not pull in
// the Prometheus client.
package prometheus

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpauth/mcpauth"
)

// Options configures a [Sink]. The zero value registers with
// prometheus.DefaultRegisterer and passes events on to no one.
type Options struct {
	// Registerer is where the metrics are registered. Nil (the default)
	// means prometheus.DefaultRegisterer.
	Registerer prometheus.Registerer
	// Next receives every event after it is counted, for example
	// mcpauth.LogEvents(logger). Nil (the default) means none.
	Next mcpauth.EventSink
	// Namespace prefixes the metric names. Empty (the default) means
	// "mcpauth".
	Namespace string
	// MaxValues bounds the distinct values of each label; further values
	// are counted as "other". Zero (the default) means 64.
	MaxValues int
	// Buckets are the latency histogram's bucket bounds, in seconds. Nil
	// (the default) means 10µs to about 0.7s, by factors of 4.
	Buckets []float64
}

// Sink counts events as Prometheus metrics. It is safe for concurrent use.
type Sink struct {
	next    mcpauth.EventSink
	reg     prometheus.Registerer
	ns      string
	events  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	labels  [4]labelSet // kind, outcome, method, reason
}

// New registers the metrics and returns the sink. It returns the
// registerer's error if they are registered already.
func New(opts *Options) (*Sink, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.DefaultRegisterer
	}
	if o.Namespace == "" {
		o.Namespace = "mcpauth"
	}
	if o.MaxValues < 0 {
		return nil, errors.New("mcpauth: prometheus: negative MaxValues")
	}
	if o.MaxValues == 0 {
		o.MaxValues = 64
	}
	if o.Buckets == nil {
		o.Buckets = prometheus.ExponentialBuckets(1e-5, 4, 9)
	}
	s := &Sink{next: o.Next, reg: o.Registerer, ns: o.Namespace}
	for i := range s.labels {
		s.labels[i].max = int64(o.MaxValues)
	}
	s.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: o.Namespace, Name: "events_total",
		Help: "Security events by kind, outcome, authentication method and reason.",
	}, []string{"kind", "outcome", "method", "reason"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: o.Namespace, Name: "decision_seconds",
		Help:    "How long timed security decisions took, by kind and outcome.",
		Buckets: o.Buckets,
	}, []string{"kind", "outcome"})
	if err := o.Registerer.Register(s.events); err != nil {
		return nil, err
	}
	if err := o.Registerer.Register(s.latency); err != nil {
		o.Registerer.Unregister(s.events)
		return nil, err
	}
	return s, nil
}

// Record implements [mcpauth.EventSink].
func (s *Sink) Record(ctx context.Context, e mcpauth.Event) {
	kind := s.labels[0].value(string(e.Kind))
	outcome := s.labels[1].value(string(e.Outcome))
	s.events.WithLabelValues(kind, outcome, s.labels[2].value(string(e.Method)), s.labels[3].value(e.Reason)).Inc()
	if e.Latency > 0 {
		s.latency.WithLabelValues(kind, outcome).Observe(e.Latency.Seconds())
	}
	if s.next != nil {
		s.next.Record(ctx, e)
	}
}

// WatchDrops exports a's dropped events as mcpauth_events_dropped_total.
func (s *Sink) WatchDrops(a *mcpauth.AsyncSink) error {
	return s.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: s.ns, Name: "events_dropped_total",
		Help: "Security events dropped because the event sink's buffer was full.",
	}, func() float64 { return float64(a.Dropped()) }))
}

// maxLabelLen bounds a label value; a longer one is "other".
const maxLabelLen = 64

// labelSet admits at most max distinct values of one label.
type labelSet struct {
	seen  sync.Map // string -> struct{}
	count atomic.Int64
	max   int64
}

func (l *labelSet) value(v string) string {
	if _, ok := l.seen.Load(v); ok {
		return v
	}
	if len(v) > maxLabelLen || l.count.Load() >= l.max {
		return "other"
	}
	if _, loaded := l.seen.LoadOrStore(v, struct{}{}); !loaded {
		if l.count.Add(1) > l.max {
			l.seen.Delete(v)
			return "other"
		}
	}
	return v
}
