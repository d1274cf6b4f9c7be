package repl_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

// A register: one document's value, read with readConcern linearizable,
// written with w:"majority", and compare-and-set through findAndModify.
type regOp uint8

const (
	regRead regOp = iota
	regWrite
	regCAS
)

type regInput struct {
	op       regOp
	old, val int
}

type regOutput struct {
	val     int  // read: the value seen
	ok      bool // cas: it matched
	unknown bool // write or cas whose outcome the client could not know
}

// registerModel accepts a history iff some order of its operations,
// consistent with real time, explains every output. A write or CAS that
// failed with an unknown outcome may or may not have taken effect.
var registerModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{0} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(int), input.(regInput), output.(regOutput)
		switch in.op {
		case regRead:
			if out.val == st {
				return []any{st}
			}
			return nil
		case regWrite:
			if out.unknown {
				return []any{st, in.val}
			}
			return []any{in.val}
		default:
			switch {
			case out.unknown && st == in.old:
				return []any{st, in.val}
			case out.unknown:
				return []any{st}
			case out.ok && st == in.old:
				return []any{in.val}
			case !out.ok && st != in.old:
				return []any{st}
			}
			return nil
		}
	},
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%+v -> %+v", input, output)
	},
}

// TestRegisterIsLinearizable runs concurrent clients on one register while
// the primary is, in turn, stepped down, cut off by a network partition
// (links severed, or black-holed so that only timeouts notice), or loses
// its key (and so leaves the set); then it checks the history with
// porcupine.
func TestRegisterIsLinearizable(t *testing.T) {
	set := repltest.Start(t, 3, repltest.WithLinks)
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	setup := connect(t, set.URI())
	reg := setup.Database("app").Collection("reg", options.Collection().SetWriteConcern(writeconcern.Majority()))
	if _, err := reg.InsertOne(ctx, bson.D{{Key: "_id", Value: "r"}, {Key: "v", Value: 0}}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	stamp := func() int64 { return int64(time.Since(start)) }
	const clients = 4
	// The clients run until the faults are done: at least runFor, and
	// until every kind of fault happened (a loaded machine elects slowly).
	runFor := 12 * time.Second
	var clientsDone atomic.Bool
	var (
		mu  sync.Mutex
		ops []porcupine.Operation
	)
	var wg sync.WaitGroup
	for id := 0; id < clients; id++ {
		c := connect(t, set.URI())
		coll := c.Database("app", options.Database().SetReadConcern(&readconcern.ReadConcern{Level: "linearizable"})).
			Collection("reg", options.Collection().SetWriteConcern(writeconcern.Majority()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(id), 7))
			for !clientsDone.Load() {
				in := regInput{op: regOp(rnd.IntN(3)), old: rnd.IntN(5), val: rnd.IntN(5)}
				octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
				call := stamp()
				var out regOutput
				var err error
				switch in.op {
				case regRead:
					var d struct {
						V int `bson:"v"`
					}
					err = coll.FindOne(octx, bson.D{{Key: "_id", Value: "r"}}).Decode(&d)
					out.val = d.V
				case regWrite:
					_, err = coll.UpdateOne(octx, bson.D{{Key: "_id", Value: "r"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: in.val}}}})
				case regCAS:
					err = coll.FindOneAndUpdate(octx, bson.D{{Key: "_id", Value: "r"}, {Key: "v", Value: in.old}},
						bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: in.val}}}}).Err()
					out.ok = err == nil
					if errors.Is(err, mongo.ErrNoDocuments) {
						err = nil
					}
				}
				ocancel()
				ret := stamp()
				if err != nil {
					if in.op == regRead {
						continue // a failed read had no effect
					}
					// Unknown outcome: it may take effect at any time after
					// its call.
					out.unknown, ret = true, int64(1<<62)
					time.Sleep(20 * time.Millisecond)
				}
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}

	// Faults: the primary steps down, or its key is revoked for a while
	// (it leaves the set) and restored.
	faults, partitionFailovers := 0, 0
	for time.Since(start) < runFor || faults < 4 || partitionFailovers == 0 {
		if time.Since(start) > 2*time.Minute {
			break // reported below
		}
		time.Sleep(700 * time.Millisecond)
		p := -1
		for i, m := range set.Members {
			if m.Repl.CheckWritable() == nil {
				p = i
			}
		}
		if p < 0 {
			continue
		}
		faults++
		switch faults % 4 {
		case 1:
			_ = direct(t, set.Members[p].Host).Database("admin").RunCommand(ctx, bson.D{{Key: "replSetStepDown", Value: 10}}).Err()
		case 2, 3:
			// The old primary keeps its clients while the other two
			// elect a new one: whatever it still answers must fit.
			set.Isolate(p, faults%4 == 2)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && !otherPrimary(set, p) {
				time.Sleep(50 * time.Millisecond)
			}
			if otherPrimary(set, p) {
				partitionFailovers++
			}
			time.Sleep(300 * time.Millisecond)
			set.Heal()
		default:
			n := set.Members[p].Node
			n.Disable("test: key revoked", kms.Reason("KEY_DISABLED"))
			time.Sleep(500 * time.Millisecond)
			if err := n.Enable(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	clientsDone.Store(true)
	wg.Wait()

	var definite, unknown int
	for _, op := range ops {
		if op.Output.(regOutput).unknown {
			unknown++
		} else {
			definite++
		}
	}
	res, _ := porcupine.CheckOperationsVerbose(registerModel.ToModel(), ops, time.Minute)
	t.Logf("%d operations (%d with an unknown outcome), %d faults (%d partitions that elected another primary): %v",
		len(ops), unknown, faults, partitionFailovers, res)
	if res != porcupine.Ok {
		t.Fatalf("the register's history is not linearizable (%v)", res)
	}
	if definite < 50 || faults < 4 || partitionFailovers == 0 {
		t.Fatalf("too little happened to check: %d definite operations, %d faults, %d partition failovers", definite, faults, partitionFailovers)
	}
}

// otherPrimary reports whether a member other than p is a writable primary.
func otherPrimary(set *repltest.Set, p int) bool {
	for i, m := range set.Members {
		if i != p && m.Repl.CheckWritable() == nil {
			return true
		}
	}
	return false
}
