package repl

import (
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// observedTransport is the member's raft transport as raft sees it. It
// does three things on top of the transport it wraps:
//
//   - dials a server's raft address, the part of its configuration
//     address before the MongoDB host (memberAddress);
//   - on the leader, records the highest log index each follower
//     acknowledged (AppendEntries and InstallSnapshot answers), the
//     measure promote uses to decide a non-voter caught up;
//   - on a receiver, counts the bytes of an incoming snapshot (the
//     initial sync's copy) for the member's sync progress.
//
// It never alters what raft sends or receives.
type observedTransport struct {
	raft.Transport
	m        *Member
	consumer chan raft.RPC
	done     chan struct{}
	once     sync.Once
}

func (m *Member) observe(t raft.Transport) *observedTransport {
	o := &observedTransport{Transport: t, m: m, consumer: make(chan raft.RPC), done: make(chan struct{})}
	go o.forward()
	return o
}

// forward passes inbound RPCs on to raft, counting a snapshot's bytes as
// raft reads them.
func (o *observedTransport) forward() {
	in := o.Transport.Consumer()
	for {
		select {
		case <-o.done:
			return
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.InstallSnapshotRequest); ok && rpc.Reader != nil {
				rpc.Reader = o.m.sync.receiving(rpc.Reader, req.Size)
			}
			select {
			case o.consumer <- rpc:
			case <-o.done:
				return
			}
		}
	}
}

func (o *observedTransport) Consumer() <-chan raft.RPC { return o.consumer }

func dial(a raft.ServerAddress) raft.ServerAddress {
	raftAddr, _ := splitAddress(a)
	return raft.ServerAddress(raftAddr)
}

func (o *observedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := o.Transport.AppendEntries(id, dial(target), args, resp)
	if err == nil {
		o.noteAppend(id, args, resp)
	}
	return err
}

func (o *observedTransport) noteAppend(id raft.ServerID, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if resp == nil || !resp.Success || args == nil {
		return
	}
	last := args.PrevLogEntry
	if n := len(args.Entries); n > 0 {
		last = args.Entries[n-1].Index
	}
	if last > 0 {
		o.m.noteMatch(id, last)
	}
}

func (o *observedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := o.Transport.AppendEntriesPipeline(id, dial(target))
	if err != nil {
		return nil, err
	}
	op := &observedPipeline{AppendPipeline: p, o: o, id: id, out: make(chan raft.AppendFuture, 128), done: make(chan struct{})}
	go op.forward()
	return op, nil
}

func (o *observedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return o.Transport.RequestVote(id, dial(target), args, resp)
}

func (o *observedTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	err := o.Transport.InstallSnapshot(id, dial(target), args, resp, data)
	if err == nil && resp.Success {
		o.m.noteMatch(id, args.LastLogIndex)
	}
	return err
}

func (o *observedTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return o.Transport.TimeoutNow(id, dial(target), args, resp)
}

var errNoPreVote = errors.New("repl: the transport does not support pre-vote")

// RequestPreVote implements raft.WithPreVote (the transports cmkdb uses
// all support it).
func (o *observedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pv, ok := o.Transport.(raft.WithPreVote)
	if !ok {
		return errNoPreVote
	}
	return pv.RequestPreVote(id, dial(target), args, resp)
}

// Close implements raft.WithClose.
func (o *observedTransport) Close() error {
	o.once.Do(func() { close(o.done) })
	if c, ok := o.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// observedPipeline passes a pipeline's answers on to raft, recording what
// each acknowledged.
type observedPipeline struct {
	raft.AppendPipeline
	o    *observedTransport
	id   raft.ServerID
	out  chan raft.AppendFuture
	done chan struct{}
	once sync.Once
}

func (p *observedPipeline) forward() {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case <-p.done:
			return
		case f := <-in:
			if f.Error() == nil {
				p.o.noteAppend(p.id, f.Request(), f.Response())
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		}
	}
}

func (p *observedPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

func (p *observedPipeline) Close() error {
	p.once.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
}
