// Package syncbuf is a byte buffer that one goroutine (a logger, a child
// process's output) writes while another reads it: the tests' logs.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer with its writes and reads serialized.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
