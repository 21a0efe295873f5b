package kstreamtest

import (
	"context"
	"errors"
	"net"
	"sync"
)

// errSevered is what a severed link's dialer returns. It is deliberately
// neither a *net.OpError nor a temporary error: franz-go retries those, and a
// crashed member must fail its final commit and LeaveGroup at once instead of
// retrying them until its close deadline.
var errSevered = errors.New("kstreamtest: connection severed: the member crashed")

// link is a franz-go dialer whose connections the kit can cut, the way a
// process that dies loses its sockets. After sever, every open connection is
// closed and every new dial fails, so the client can neither commit nor send
// LeaveGroup: the broker only learns of the crash when the member's session
// times out.
type link struct {
	mu      sync.Mutex
	severed bool
	conns   map[*linkConn]struct{}
}

func newLink() *link { return &link{conns: make(map[*linkConn]struct{})} }

// dial is the kgo.Dialer function.
func (l *link) dial(ctx context.Context, network, host string) (net.Conn, error) {
	l.mu.Lock()
	severed := l.severed
	l.mu.Unlock()
	if severed {
		return nil, errSevered
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	lc := &linkConn{Conn: conn, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.severed { // severed while we dialed
		conn.Close()
		return nil, errSevered
	}
	l.conns[lc] = struct{}{}
	return lc, nil
}

// sever closes every connection and fails every later dial until heal.
func (l *link) sever() {
	l.mu.Lock()
	l.severed = true
	conns := make([]*linkConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	clear(l.conns)
	l.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close()
	}
}

// heal lets dials succeed again, for a client created after a crash (a
// stream opened again).
func (l *link) heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.severed = false
}

// linkConn is a connection that forgets itself from its link when closed.
type linkConn struct {
	net.Conn
	l *link
}

func (c *linkConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
