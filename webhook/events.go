package webhook

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
)

// EventDeduper lets one Event through per key within an interval. It
// holds at most a fixed number of keys, forgetting the least recently
// used, so that it cannot grow with what callers send.
type EventDeduper struct {
	interval time.Duration
	mu       sync.Mutex // makes the look-up and the insert one step
	seen     *cache.LRUExpireCache
}

// maxEventKeys bounds the keys an EventDeduper remembers.
const maxEventKeys = 4096

// NewEventDeduper returns a deduper that lets one Event through per key
// within interval.
func NewEventDeduper(interval time.Duration) *EventDeduper {
	return &EventDeduper{interval: interval, seen: cache.NewLRUExpireCache(maxEventKeys)}
}

// First reports whether key has had no Event within the interval, and
// starts a new interval for it if so. A nil deduper lets everything
// through.
func (e *EventDeduper) First(key string) bool {
	if e == nil {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.seen.Get(key); ok {
		return false
	}
	e.seen.Add(key, struct{}{}, e.interval)
	return true
}
