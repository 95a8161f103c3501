// Package benchcmp measures a piece of mcpauth against its baseline within
// one benchmark, so that the ratio the targets are stated in does not depend
// on what else the machine was doing.
package benchcmp

import (
	"net/http"
	"testing"
	"time"
)

// Interleave times ours and base in alternating batches, so that load from
// elsewhere on the machine falls on both alike, and reports each one's ns/op
// and their ratio (ours / base) as benchmark metrics.
func Interleave(b *testing.B, batch int, ours, base func()) {
	b.Helper()
	var tOurs, tBase time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		for range batch {
			ours()
		}
		mid := time.Now()
		for range batch {
			base()
		}
		tOurs += mid.Sub(start)
		tBase += time.Since(mid)
		n += batch
	}
	b.ReportMetric(float64(tOurs.Nanoseconds())/float64(n), "mcpauth-ns/op")
	b.ReportMetric(float64(tBase.Nanoseconds())/float64(n), "baseline-ns/op")
	b.ReportMetric(float64(tOurs)/float64(tBase), "ratio")
}

// DiscardWriter is an http.ResponseWriter that keeps nothing, so that a
// benchmark measures the handler rather than a recorder. Reset clears the
// header between requests.
type DiscardWriter struct{ h http.Header }

// NewDiscardWriter returns a DiscardWriter with an empty header.
func NewDiscardWriter() *DiscardWriter { return &DiscardWriter{h: http.Header{}} }

func (w *DiscardWriter) Header() http.Header         { return w.h }
func (w *DiscardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *DiscardWriter) WriteHeader(int)             {}

// Reset empties the header, keeping its map.
func (w *DiscardWriter) Reset() { clear(w.h) }
