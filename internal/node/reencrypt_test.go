package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// writerNode is a node with docstore stores per database, reopened when
// the node's engine changes (as the handlers do).
type writerNode struct {
	*Node
	mu     sync.Mutex
	eng    *storage.Engine
	stores map[string]*docstore.Store
}

// insert writes one document into db.coll through docstore, holding the
// node as a command does.
func (w *writerNode) insert(db, coll string, doc bson.D) error {
	eng, _, release, err := w.Acquire()
	if err != nil {
		return err
	}
	defer release()
	w.mu.Lock()
	if w.eng != eng {
		w.eng, w.stores = eng, map[string]*docstore.Store{}
	}
	s, ok := w.stores[db]
	if !ok {
		d, err := eng.Database(db)
		if errors.Is(err, storage.ErrNoDatabase) {
			d, err = eng.CreateDatabase(db)
		}
		if err == nil {
			s, err = docstore.Open(d, nil)
		}
		if err != nil {
			w.mu.Unlock()
			return err
		}
		w.stores[db] = s
	}
	w.mu.Unlock()
	c, err := s.EnsureCollection(coll)
	if err != nil {
		return err
	}
	raw, _ := bson.Marshal(doc)
	return s.Write(context.Background(), func(wr *docstore.Writer) error { return wr.Insert(c, raw) })
}

// count counts db.coll's documents (0 if the database does not exist).
func (w *writerNode) count(db, coll string) (int, error) {
	eng, _, release, err := w.Acquire()
	if err != nil {
		return 0, err
	}
	defer release()
	d, err := eng.Database(db)
	if errors.Is(err, storage.ErrNoDatabase) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s, err := docstore.Open(d, nil)
	if err != nil {
		return 0, err
	}
	c := s.Collection(coll)
	if c == nil {
		return 0, nil
	}
	n, err := s.Count(context.Background(), c)
	return int(n), err
}

// ids lists the _ids of db.coll, sorted.
func (w *writerNode) ids(t *testing.T, db, coll string) []string {
	t.Helper()
	eng, _, release, err := w.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	d, err := eng.Database(db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := docstore.Open(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Collection(coll)
	if c == nil {
		return nil
	}
	var out []string
	var pos docstore.Position
	if err := s.Scan(context.Background(), c, docstore.Plan{}, &pos, func(doc bson.Raw) (bool, error) {
		out = append(out, doc.Lookup("_id").StringValue())
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func openWriterNode(t *testing.T, l Layout) *writerNode {
	t.Helper()
	n, err := openNodeForChild(l)
	if err != nil {
		t.Fatal(err)
	}
	return &writerNode{Node: n}
}

// openNodeForChild opens the node of l with its local CMK.
func openNodeForChild(l Layout) (*Node, error) {
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		return nil, err
	}
	return Open(context.Background(), l, cmk, Options{CacheSize: 8 << 20})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func keystoreIDs(t *testing.T, n *Node) (nodeID string, ids []string) {
	t.Helper()
	_, ks, release, err := n.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, id := range ks.DatabaseIDs() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ks.NodeID(), ids
}

// TestReencryptInPlaceWhileWriting re-encrypts a node while writers keep
// inserting into three databases (and one database is created during the
// copy). No write fails; every acknowledged document is there afterwards,
// also after a restart; the node has a new node id and master key; the
// data directory holds only the new hierarchy's databases (no directory of
// an old database id is left) and the keystore generation went up.
func TestReencryptInPlaceWhileWriting(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	n := openWriterNode(t, l)
	for i := 0; i < 3000; i++ {
		db := fmt.Sprintf("db%d", i%3)
		if err := n.insert(db, "c", bson.D{{Key: "_id", Value: fmt.Sprintf("pre-%05d", i)}, {Key: "pad", Value: make([]byte, 300)}}); err != nil {
			t.Fatal(err)
		}
	}
	oldNode, oldIDs := keystoreIDs(t, n.Node)
	genBefore := n.KeystoreGeneration()

	var acked [4][]string
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			db := fmt.Sprintf("db%d", w%3)
			if w == 3 {
				db = "created-during" // a database the copy did not list at first
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%06d", w, i)
				if err := n.insert(db, "c", bson.D{{Key: "_id", Value: id}}); err != nil {
					failed.Add(1)
					t.Errorf("insert during re-encryption: %v", err)
					return
				}
				acked[w] = append(acked[w], id)
			}
		}(w)
	}
	var phases []string
	err := n.Reencrypt(context.Background(), func(p ReencryptProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		if p.BytesCopied > p.BytesTotal {
			t.Errorf("progress %d of %d bytes", p.BytesCopied, p.BytesTotal)
		}
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(phases) != "[COPYING SWITCHING DONE]" {
		t.Errorf("phases %v", phases)
	}

	check := func(n *writerNode) {
		t.Helper()
		for w := 0; w < 4; w++ {
			db := fmt.Sprintf("db%d", w%3)
			if w == 3 {
				db = "created-during"
			}
			have := map[string]bool{}
			for _, id := range n.ids(t, db, "c") {
				have[id] = true
			}
			for _, id := range acked[w] {
				if !have[id] {
					t.Fatalf("acknowledged %s.c %s is missing after re-encryption", db, id)
				}
			}
		}
		for i := 0; i < 3; i++ {
			if got := len(n.ids(t, fmt.Sprintf("db%d", i), "c")); got < 1000 {
				t.Fatalf("db%d has %d documents", i, got)
			}
		}
	}
	check(n)
	newNode, newIDs := keystoreIDs(t, n.Node)
	if newNode == oldNode {
		t.Fatal("the node id did not change: no new hierarchy")
	}
	if n.KeystoreGeneration() <= genBefore {
		t.Fatalf("keystore generation %d, was %d", n.KeystoreGeneration(), genBefore)
	}
	if got := dirNames(t, l.DataDir()); fmt.Sprint(got) != fmt.Sprint(newIDs) {
		t.Fatalf("data directory holds %v, the new keystore names %v (old ids %v)", got, newIDs, oldIDs)
	}
	for _, id := range oldIDs {
		for _, nid := range newIDs {
			if id == nid {
				t.Fatalf("database id %s survived re-encryption", id)
			}
		}
	}
	if _, err := os.Stat(l.NextDir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s left behind: %v", l.NextDir(), err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir, "node", "quarantine")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("re-encryption quarantined something")
	}
	r, err := keys.Inspect(l.KeystoreDir())
	if err != nil || r.NodeID != newNode {
		t.Fatalf("keystore on disk: %v %v", r, err)
	}

	n.Close()
	n = openWriterNode(t, l)
	defer n.Close()
	check(n)
}

// TestReencryptInterrupted stops a re-encryption just before its commit
// point and just after it, as a crash there would, then restarts the node:
// before, the node keeps its old hierarchy and the copy is gone; after, the
// restart finishes the switch. Either way every document is there and no
// directory is quarantined.
func TestReencryptInterrupted(t *testing.T) {
	for _, step := range []string{"commit", "move"} {
		t.Run(step, func(t *testing.T) {
			l := Layout{Dir: t.TempDir()}
			n := openWriterNode(t, l)
			for i := 0; i < 500; i++ {
				if err := n.insert("app", "c", bson.D{{Key: "_id", Value: fmt.Sprintf("%05d", i)}}); err != nil {
					t.Fatal(err)
				}
			}
			oldNode, _ := keystoreIDs(t, n.Node)
			n.switchHook = func(s string) error {
				if s == step {
					return errors.New("crash at " + s)
				}
				return nil
			}
			err := n.Reencrypt(context.Background(), nil)
			if err == nil {
				t.Fatal("re-encryption did not stop")
			}
			var sw *switchedError
			if switched := errors.As(err, &sw); switched != (step == "move") {
				t.Fatalf("stopped at %s: %v", step, err)
			}
			if step == "commit" {
				// Abandoned: the node serves its old hierarchy at once.
				if id, _ := keystoreIDs(t, n.Node); id != oldNode {
					t.Fatal("node id changed though the switch never happened")
				}
				if _, err := os.Stat(l.NextDir()); !errors.Is(err, os.ErrNotExist) {
					t.Fatal("abandoned copy left behind")
				}
			} else if n.State().Available {
				t.Fatal("a node whose switch failed half-way still serves")
			}
			n.Close()
			n = openWriterNode(t, l)
			defer n.Close()
			if got := len(n.ids(t, "app", "c")); got != 500 {
				t.Fatalf("%d documents after restart, want 500", got)
			}
			id, ids := keystoreIDs(t, n.Node)
			if (id != oldNode) != (step == "move") {
				t.Fatalf("node id after restart: changed=%v", id != oldNode)
			}
			if got := dirNames(t, l.DataDir()); fmt.Sprint(got) != fmt.Sprint(ids) {
				t.Fatalf("data directory holds %v, keystore names %v", got, ids)
			}
			if _, err := os.Stat(filepath.Join(l.Dir, "node", "quarantine")); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("something was quarantined")
			}
		})
	}
}
