package egress

import (
	"bufio"
	"io"
	"net"
	"sync"
)

// lazyBuf is a write buffer that holds pooled memory only between its first
// write and the next Flush: with a thousand kept-alive connections, only
// those writing right now hold a buffer.
type lazyBuf struct {
	w   io.Writer
	buf *[]byte
	err error
}

const lazyBufSize = 4096

var lazyPool = sync.Pool{New: func() any { b := make([]byte, 0, lazyBufSize); return &b }}

func newLazyBuf(w io.Writer) *lazyBuf { return &lazyBuf{w: w} }

func (l *lazyBuf) grab() {
	if l.buf == nil {
		l.buf = lazyPool.Get().(*[]byte)
		*l.buf = (*l.buf)[:0]
	}
}

// Write implements io.Writer.
func (l *lazyBuf) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	l.grab()
	if len(*l.buf)+len(p) > lazyBufSize {
		if err := l.drain(); err != nil {
			return 0, err
		}
		if len(p) >= lazyBufSize {
			n, err := l.w.Write(p)
			l.err = err
			return n, err
		}
	}
	*l.buf = append(*l.buf, p...)
	return len(p), nil
}

// WriteString implements io.StringWriter.
func (l *lazyBuf) WriteString(s string) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	l.grab()
	if len(*l.buf)+len(s) > lazyBufSize {
		if err := l.drain(); err != nil {
			return 0, err
		}
		if len(s) >= lazyBufSize {
			n, err := io.WriteString(l.w, s)
			l.err = err
			return n, err
		}
	}
	*l.buf = append(*l.buf, s...)
	return len(s), nil
}

// WriteByte makes lazyBuf an io.ByteWriter, so http.Request.Write does not
// wrap it in a bufio.Writer of its own.
func (l *lazyBuf) WriteByte(c byte) error {
	_, err := l.Write([]byte{c})
	return err
}

func (l *lazyBuf) drain() error {
	if l.buf != nil && len(*l.buf) > 0 {
		_, l.err = l.w.Write(*l.buf)
		*l.buf = (*l.buf)[:0]
	}
	return l.err
}

// Flush writes what is buffered and gives the memory back.
func (l *lazyBuf) Flush() error {
	err := l.drain()
	if l.buf != nil {
		lazyPool.Put(l.buf)
		l.buf = nil
	}
	return err
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// getReader returns a pooled 4 KiB reader on c; upstream connections hold
// one only while a response is read.
func getReader(c net.Conn) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}
